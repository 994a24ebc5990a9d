"""``equidmri bench pretrained``: the shipped pretrained SHD-TV model against dipy CSD (issue #18's targets).

Four sections, each ours against the reference on the same input in the same run:

1. **Accuracy without training on the subject** on phantoms whose seeds the training never drew (the project's
   generator; 90 directions of b = 1000 s/mm² plus b=0, SNR 30): the pretrained model on the low angular
   resolution series (b=0 + 29 directions, SHD §4.2.1) and on the full one, against dipy CSD lmax 6 and 8 on the
   same series and the same estimated WM response. Peaks (at most 3) are matched to the ground-truth fibres
   within 25°; F1 and the mean angular error are read at each method's F1-best relative peak threshold. The
   pretrained model runs as ``deconv`` does (the targets; with the spatial term, its weight scaled to the number
   of fitted volumes: 3e-5 at 29 directions, 9.7e-6 at 90) and with ``--refine-tv 0`` (each voxel on its own;
   reported beside, in sections 1 and 2).
2. **Real data**: dipy's ``small_64D`` (b = 1000, 64 directions): main peaks within 25° of dipy CSD (lmax 8) in the
   voxels with FA > 0.4, the demo's measure; then the volume read at 29 random directions of its 64 (4 draws),
   ours and CSD lmax 6/8 on the subset against CSD lmax 8 on all 64.
3. **Speed and memory** on a whole-brain-sized volume (100×100×60 voxels, an ellipsoidal brain-shaped mask, b=0 +
   30 directions of b = 1000; a phantom tiled to that size): ``equidmri deconv`` end to end (load, mask, response,
   inference, peaks, write, QC) against dipy CSD fit + peaks (serial, and ``engine="joblib"`` on the machine's
   cores), each in a fresh process, the three in turn in each of the repeats (rounds), with the medians, each
   round's ratio and each process's peak RSS. The peak RSS of ``deconv`` on
   the HCP grid (145×174×145) with b=0 + 30 and b=0 + 150 directions (the model's maximum), read on the line
   through them at 288 volumes, bounds an HCP-sized input (145×174×145×288).
4. **Multi-shell phantoms**: the shipped multi-shell model against dipy MSMT-CSD (lmax 8) on phantoms with b=0 +
   90 directions on each of b = 1000, 2000 and 3000 s/mm², and read at 30 per shell
   (:mod:`equidmri.bench.pretrained_multishell`; reported, no target).
"""

from __future__ import annotations

import argparse

from equidmri.bench.catalog import BENCHES
from equidmri.bench.report import add_report_args

NAME = "pretrained"
SECTIONS = ("accuracy", "real", "speed", "multishell")
DEFAULTS = {
    "phantoms": 2,
    "phantom_size": 40,
    "brain_shape": [100, 100, 60],
    "hcp_grid": [145, 174, 145],
    "hcp_directions": [30, 150],
    "repeats": 3,
    "subset_draws": 4,  # random 29-direction subsets of small_64D (section 2)
    "ms_phantoms": 2,
    "ms_phantom_size": 20,  # dipy's MSMT-CSD fits about 30 voxels/s: 3120 mask voxels, 105 s per series
    "ms_series": ["low", "high"],
}
QUICK = {
    "phantoms": 1,
    "phantom_size": 16,
    "brain_shape": [24, 24, 16],
    "hcp_grid": [20, 24, 20],
    "hcp_directions": [30, 60],
    "repeats": 1,
    "subset_draws": 1,
    "ms_phantoms": 1,
    "ms_phantom_size": 8,  # 184 mask voxels; the "high" series (at 10³ the "low" one of phantom 0 has no CSF voxel)
    "ms_series": ["high"],
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench pretrained``."""
    parser = subparsers.add_parser(
        NAME, help=BENCHES[NAME].summary, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_report_args(
        parser,
        NAME,
        "one 16³ phantom (8³ multi-shell, 90 directions per shell), a 24×24×16 speed volume and a 20×24×20 "
        "stand-in HCP grid, 1 repeat",
    )
    parser.add_argument(
        "--model",
        metavar="FILE",
        help="a checkpoint of the single-shell recipe (sections accuracy, real; default: the shipped model)",
    )
    parser.add_argument(
        "--multi-shell-model",
        metavar="FILE",
        help="a checkpoint of the multi-shell recipe (section multishell; default: the shipped model)",
    )
    parser.add_argument(
        "--sections",
        type=_sections,
        default=SECTIONS,
        metavar="LIST",
        help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all; speed does not depend on "
        "the weights, only on the architecture)",
    )
    return parser


def _sections(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"sections must be among {', '.join(SECTIONS)}, got {text!r}")
    return chosen
