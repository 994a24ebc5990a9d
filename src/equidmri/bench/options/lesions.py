"""Lesion segmentation on SYNTHETIC lesions: the p×q-space SE(3) network against a 3D CNN (issue 19 §3).

``equidmri bench lesions [--quick] [--train N] [--size S] [--epochs E] [--seeds N] [--fractions F ...]
[--dice-weight W]``

A synthetic lesion set (:mod:`equidmri.sims.lesion_set`, docs/lesions.md): multi-shell phantoms of S³ voxels
(b = 1000 and 2000 s/mm², 12 directions each, one b=0) with 1-3 white-matter lesions each (raised isotropic
diffusivity, lower fibre fraction, T2-bright b=0), SNR 15 and 30; train / val / test volumes of different seeds,
and ``test_rotated``: the test subjects tilted by exact 90° grid rotations and re-simulated on the same
protocol (so the CNN sees its channels mixed; the equivariant network sees a rotated input). Both networks
(``pq``: the paper's five-layer network, ``cnn``: 3D convolutions on the DWI volumes as channels, width chosen
for a similar parameter count) are trained with BCE + W × soft Dice on each fraction of the training volumes
for each seed, the best validation epoch kept. Scores on all mask voxels of each test set pooled: ROC AUC,
average precision and Dice at 0.5 (scikit-learn), mean and 95 % t-interval over seeds; the paper's claims
checked on the means. Writes ``OUT/lesions.{json,md}`` and the figures ``OUT/lesions.png`` (Fig. 1: slices
and ROC curves), ``OUT/lesions_sizes.png`` (Fig. 2: metrics against training volumes) and
``OUT/lesions_maps.png`` (Fig. 3: one test volume's maps across training sizes).
"""

from __future__ import annotations

import argparse

from equidmri.bench.catalog import BENCHES
from equidmri.bench.report import add_report_args

NAME = "lesions"
# Fractions of Müller et al.'s Fig. 2 (1/8, 1/4, 1/2, 2/3, all); the training loss is BCE + soft Dice for both
# networks (docs/lesions.md, "Diagnosis"). About 9 min of CPU (docs/lesions.md, "Full run").
DEFAULTS = {
    "train": 8,
    "size": 10,
    "epochs": 20,
    "seeds": 3,
    "fractions": [0.125, 0.25, 0.5, 0.6667, 1.0],
    "dice_weight": 1.0,
}
QUICK = {"train": 1, "size": 8, "epochs": 1, "seeds": 1, "fractions": [1.0], "dice_weight": 1.0}
VAL, TEST = 2, 4  # validation and test volumes (--quick: 1 and 1)
QUICK_VAL, QUICK_TEST = 1, 1


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench lesions``."""
    parser = subparsers.add_parser(
        NAME, help=BENCHES[NAME].summary, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = parser.add_argument_group("experiment size")
    texts = {
        "train": "training volumes",
        "size": "voxels per edge of a phantom",
        "epochs": "passes over the training volumes",
        "seeds": "seeds (data and initialisation) per network and fraction",
    }
    for option, text in texts.items():
        group.add_argument(
            f"--{option}", type=int, metavar="N", help=f"{text} (default: {DEFAULTS[option]}; --quick: {QUICK[option]})"
        )
    group.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        metavar="F",
        help=f"fractions of the training volumes (default: {DEFAULTS['fractions']}; --quick: {QUICK['fractions']})",
    )
    group.add_argument(
        "--dice-weight",
        type=float,
        metavar="W",
        help=f"weight of the soft-Dice term added to the BCE, both networks (default: {DEFAULTS['dice_weight']})",
    )
    add_report_args(parser, NAME, quick=f"tiny run for tests: {QUICK}")
    return parser
