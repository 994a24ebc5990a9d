"""R³×S² MNIST segmentation: does equivariance generalise to unseen rotations? (SHD paper App. B, Fig. 11)

``equidmri bench mnist [--quick] [--volumes N] [--epochs E] [--seeds S] [--nside N] [--depth Z]``

Data (:mod:`equidmri.sims.digits`): scikit-learn's bundled 8x8 ``load_digits`` images (MNIST cannot be
downloaded here) on spheres of HEALPix nside ``--nside`` in 16 x 16 x ``--depth`` volumes; a data set
without rotations and one with a random grid rotation (about z, the tube axis) and a random sphere rotation
(SO(3)) per volume; volumes and
digit images split train/val/test in the paper's proportions 716/142/142. Four U-Nets of one structure
(registry models on the full sphere, widths ``WIDTHS``, kernel sizes 3 at level 0 and 1 below), each
followed by a per-voxel linear classifier of its vertex-averaged last feature map (invariant to sphere
rotations for the spherical networks): E(3) x SO(3) (``rt-esd``; the digits are not antipodally symmetric, so
the hemisphere of SHD does not apply), E(3)-SH (``cnn``, all SH degrees <= ``2 nside``), Concat-SO(3)
(``concat-esd``) and voxel-wise SO(3) (``esd``). Loss: 0.5 soft Dice + 0.5 cross-entropy, both with class
weights 1 / (class frequency in the training labels), normalised; Adam, batch 8, learning rate 3e-3 halved
at 50/70/90% of the epochs (the paper's schedule, with the epochs scaled to the CPU). No model selection:
the last epoch's network is scored, so the validation split is not used. Score: Dice of the hard
segmentation per digit class 1-9 over the whole test split, averaged over the classes; mean ± sd over the
seeds (network initialisation and batch order; the data are the same for every seed).
"""

from __future__ import annotations

import argparse

from equidmri.bench.catalog import BENCHES
from equidmri.bench.report import add_report_args

NAME = "mnist"
DEFAULTS = {"volumes": 1000, "epochs": 4, "seeds": 2, "nside": 4, "depth": 1}
QUICK = {"volumes": 10, "epochs": 1, "seeds": 1, "nside": 2, "depth": 1}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench mnist``."""
    parser = subparsers.add_parser(
        "mnist",
        help=BENCHES["mnist"].summary,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_report_args(parser, NAME, f"a tiny run: {QUICK}")
    parser.add_argument(
        "--volumes",
        type=int,
        help=f"volumes per data set, split 716/142/142 (default {DEFAULTS['volumes']}; the paper 1000)",
    )
    parser.add_argument("--epochs", type=int, help=f"training epochs (default {DEFAULTS['epochs']})")
    parser.add_argument("--seeds", type=int, help=f"training seeds per model (default {DEFAULTS['seeds']})")
    parser.add_argument("--nside", type=int, help=f"HEALPix resolution of the spheres (default {DEFAULTS['nside']})")
    parser.add_argument("--depth", type=int, help=f"voxels along z (default {DEFAULTS['depth']})")
    parser.add_argument("--seed", type=int, default=0, help="data seed and first training seed (default %(default)s)")
    return parser
