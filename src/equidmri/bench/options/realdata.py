"""``equidmri bench realdata``: fODF methods against a reference fODF on real volumes.

Real data that nobody here made checks what the phantoms cannot: response estimation on real tissue, real
noise, oblique affines. Every volume is deconvolved by our network and by the classical methods, shell by
shell and with all shells; each result's main peaks are compared with the reference's in the voxels with a
clear WM fODF, and the reference's clear crossings are looked for (:mod:`equidmri.eval.agreement`).

Volumes
-------
- dipy's ``small_64D`` (always; nothing to download): 10³ voxels, b = 1000 s/mm², 64 directions. It has no
  reference fODF, so dipy's CSD (lmax 8) serves as the reference.
- ``--volume NAME=DIR`` for any other. ``DIR`` holds either ``dwi.nii.gz``, ``dwi.bval``, ``dwi.bvec``, optionally
  ``mask.nii.gz`` and ``reference_fod.nii.gz`` (an MRtrix3 SH image: ``tournier07``, world frame), or the
  MRtrix3 layout ``dwi.mif`` (gradients in its header), ``mask.mif``, ``wm.mif`` (the reference), which is
  converted with MRtrix3's ``mrconvert``. MRtrix3's multi-shell test volume is such a folder: ``git clone
  https://github.com/MRtrix3/test_data`` and pass ``--volume mrtrix_msmt=test_data/dwi2fod/msmt``.

Peaks of every fODF (reference included) come from :func:`equidmri.dmri.peaks.find_peaks` at lmax 8 with a
relative threshold of ``PEAK_THRESHOLD`` and at most ``NPEAKS`` peaks, so both sides of a comparison are
treated alike.

SHD-TV is trained once per shell selection and reported twice: the network's answer as it is (the paper's
amortised inference, ``--refine-steps 0``) and refined per voxel under the same loss (the default of
``equidmri deconv``; :mod:`equidmri.recon.refine`). Where a shipped pretrained model accepts the shell
selection (:mod:`equidmri.recon.pretrained`: one shell of b = 700-3000 s/mm² with 20-150 directions, or three
shells), it is reported too, refined as ``deconv`` does (the single-shell model with the spatial term, its weight
scaled to the number of fitted volumes; the multi-shell one per voxel where its fit is determined) and with the
other choice of ``--refine-tv`` (0, or 3e-5 where the default is per voxel), without training on the volume. The
multi-tissue run of each volume also gets a figure, ``OUT/realdata_<volume>.png``: its peaks over the mean b=0 image
and its WM/GM/CSF fraction maps.
"""

from __future__ import annotations

import argparse

from equidmri.bench.catalog import BENCHES
from equidmri.bench.report import add_report_args
from equidmri.recon.config import REFINE_STEPS

NAME = "realdata"
QUICK_EPOCHS = 2


def _named_folder(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, folder


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench realdata``."""
    parser = subparsers.add_parser(
        "realdata",
        help=BENCHES["realdata"].summary,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--volume",
        type=_named_folder,
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a real volume folder (NIfTI + FSL files, or MRtrix3 .mif layout); repeatable",
    )
    parser.add_argument("--epochs", type=int, default=None, help="SHD-TV training epochs (default: the library's)")
    parser.add_argument("--seed", type=int, default=0, help="SHD-TV seed (default: %(default)s)")
    parser.add_argument(
        "--refine-steps",
        type=int,
        default=REFINE_STEPS,
        metavar="N",
        help="per-voxel refinement steps of the SHD-TV row (the network-only row has 0) (default: %(default)s)",
    )
    add_report_args(parser, NAME, quick=f"small_64D only, SHD-TV with {QUICK_EPOCHS} epochs and a tiny network")
    return parser
