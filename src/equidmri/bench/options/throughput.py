"""Whole-volume inference throughput, training time and peak memory of SHD-TV against dipy's CSD.

``equidmri bench throughput [--dwi F --bvals F --bvecs F [--mask F]] [--epochs N] [--repeats R]``

On any acquisition (default: dipy's bundled ``small_64D``), one run measures, back to back and each in a
fresh subprocess (so that its peak resident memory belongs to that stage alone):

0. ``baseline``: imports and ``load_dwi`` + ``prepare`` only (every stage starts with the same work);
1. ``train``: ``SHDModel(...).fit`` for ``--epochs`` epochs, checkpoint in a temporary directory;
2. ``ours``: ``SHDModel.from_checkpoint(...).predict(dwi, mask)``, then the same with ``fit.peaks()``; then
   one more ``predict`` under ``torch.profiler`` (seconds per stage of the masked pass and the operators
   with the most self time) and the voxels the masked pass computes at each dilation of the mask;
3. ``csd``: ``get_method("CSD (lmax 8)", ...).fit`` (dipy CSD, the same WM response and mask), then ``fit.peaks()``.

Inference times are the median of ``--repeats`` runs after one warm-up; throughput is mask voxels per
median second and the ratios are ours / CSD on the same volume in the same run. Every process gets the same
``--threads`` (``torch.set_num_threads`` and ``OMP/MKL/OPENBLAS_NUM_THREADS``). Training length does not
change the inference time; ``--epochs`` only sets how long the training row runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from equidmri.bench.catalog import BENCHES
from equidmri.bench.report import add_report_args
from equidmri.recon.config import NetworkConfig, TrainConfig

NAME = "throughput"
DEFAULT_EPOCHS = 20  # the training row's length; inference speed does not depend on it
DEFAULT_REPEATS = 5  # timed runs per inference measurement, after one warm-up
QUICK = {"epochs": 1, "repeats": 1, "patch_size": 4, "widths": [4, 4, 4, 4]}  # --quick: a smoke run
STAGES = ("baseline", "train", "ours", "csd")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench throughput``."""
    parser = subparsers.add_parser(
        NAME,
        help=BENCHES["throughput"].summary,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_report_args(parser, NAME, "a smoke run: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    group = parser.add_argument_group("data (default: dipy's bundled small_64D)")
    group.add_argument("--dwi", type=Path, metavar="FILE", help="4D NIfTI (X, Y, Z, N) of the DWI volumes")
    group.add_argument("--bvals", type=Path, metavar="FILE", help="FSL b-values file, s/mm²")
    group.add_argument("--bvecs", type=Path, metavar="FILE", help="FSL b-vectors file")
    group.add_argument("--mask", type=Path, metavar="FILE", help="3D NIfTI mask (default: median_otsu)")
    group = parser.add_argument_group("measurement")
    group.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="training epochs (default: %(default)s)")
    group.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help="timed inference runs after one warm-up (default: %(default)s)",
    )
    group.add_argument(
        "--widths",
        type=int,
        nargs="+",
        default=list(NetworkConfig().widths),
        help="channels per U-Net level (default: %(default)s, the library's)",
    )
    group.add_argument(
        "--patch-size",
        type=int,
        default=TrainConfig().patch_size,
        help="edge of the training patches, voxels (default: %(default)s, the library's)",
    )
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # internal: run one stage (child)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-output", type=Path, help=argparse.SUPPRESS)
    return parser
