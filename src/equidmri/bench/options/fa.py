"""The two experiments of Goodwin-Allcock et al. (CDMRI 2022) for FA from 6-direction scans.

``equidmri bench fa [--quick] [--n-train N] [--n-test N] [--epochs E] [--seed S]``

Training data are simulated (:mod:`equidmri.microstructure.simulate`: WM/GM/CSF-like tensors, Skare
scheme, b = 1000 s/mm², one b=0, Rician noise at SNR 20). Test data are (a) a simulated set of new tensors
with uniformly random orientations, acquired with the Skare and with the Jones scheme (same tensors,
independent noise), and (b) dipy's real ``small_64D`` volume: the reference FA is the WLS tensor fit to all
64 directions, the inputs are the 6-direction subsets nearest to each scheme.

1. ``scheme``: FCN and S-CNN trained on Skare data, tested on Skare and on Jones; 6-direction tensor
   fitting (``fit``) for reference.
2. ``orientation``: FCN and S-CNN trained on the same tensors rotated so that e1 = AP (y) and e2 = SI (z),
   and an S-CNN on the first 10% of that set, tested on unrestricted data; the unrestricted networks of
   experiment 1 for reference; the mean error over principal directions (FA > 0.6) as a HEALPix map.

RMSE per ground-truth FA bin, paired t-tests on squared errors (scipy ``ttest_rel``) and the invariance of
the S-CNN (largest FA change under random rotations of the input tensors). Writes
``OUT/fa_scnn.{json,md}`` and the PNG figures ``OUT/fa_scnn_*.png`` (``--out``, default ``docs/results``).
"""

from __future__ import annotations

import argparse

from equidmri.bench.catalog import BENCHES
from equidmri.bench.report import add_report_args

NAME = "fa_scnn"
DEFAULTS = {"n_train": 8000, "n_test": 6000, "epochs": 50}  # 784 s wall with --threads 1 on 2 shared cores
QUICK = {"n_train": 300, "n_test": 400, "epochs": 2}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench fa``."""
    parser = subparsers.add_parser(
        "fa",
        help=BENCHES["fa"].summary,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = parser.add_argument_group("experiment size")
    for option, text in (
        ("n-train", "simulated training voxels"),
        ("n-test", "simulated test voxels"),
        ("epochs", "training epochs of every network"),
    ):
        key = option.replace("-", "_")
        group.add_argument(
            f"--{option}", type=int, metavar="N", help=f"{text} (default: {DEFAULTS[key]}; --quick: {QUICK[key]})"
        )
    group.add_argument("--seed", type=int, default=0, help="seed of simulation, noise and training (default: 0)")
    add_report_args(parser, NAME, quick=f"tiny run for tests: {QUICK}")
    return parser
