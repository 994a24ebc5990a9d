"""Cross-scanner harmonization on a simulated two-scanner cohort (issue 20; Sadegheih, Weninger & Merhof 2023).

``equidmri bench harmonize [--quick] [--subjects N] [--size S] [--seed S]``

Phantom subjects (:func:`equidmri.sims.scanners.paired_cohort`) are acquired on scanner A (20-channel coil,
30 directions per shell) and scanner B (64-channel coil, 60 directions, per-shell gains, b-values 3 % high,
blur, another coil profile and bias field); shells b = 1000/2000/3000 s/mm² (docs/harmonization.md lists every
effect). They are split 60/20/20 into train / val / test subjects; every harmonizer of
:data:`equidmri.harmonize.HARMONIZERS` is fitted on the training subjects and maps each test subject's A scan
onto B's protocol; the cyclic network once per training mode (unsupervised, 2/4/10/20/30/50/80 % of the
training subjects paired, supervised), the learned ones with ``--steps`` Adam steps; ComBat
(:mod:`equidmri.harmonize.combat`) maps the test subjects' DTI FA and MD maps of A onto B (FA and MD columns
only). Errors against B as acquired, inside the mask (:mod:`equidmri.harmonize.metrics`): MSE of
the attenuation S/S0, of DTI FA and MD, and SSIM, on all shells (Table 1 analogue) and per shell (Table 2
analogue), mean ± sd over test subjects, with Wilcoxon signed-rank tests of the best method against the second
best and of each method against the baseline; the signal MSE against B's noise-free signal too. dipy's real
``small_64D`` volume pushed through scanner B is reported as one more subject. Downstream: the mean angle
between the first peaks of dipy CSD (b = 2000 s/mm²) fODFs of harmonized A and of B in the white matter. Writes
``OUT/harmonization.{json,md,png}`` (``--out``, default ``docs/results``; the figure: one slice of B and of each
method's harmonized A, with the differences).
"""

from __future__ import annotations

import argparse

from equidmri.bench.catalog import BENCHES
from equidmri.bench.report import add_report_args

NAME = "harmonization"
DEFAULTS = {"subjects": 40, "size": 20, "steps": 150}  # 24 train / 8 val / 8 test subjects of 20³ voxels
QUICK = {"subjects": 8, "size": 10, "steps": 3}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench harmonize``."""
    parser = subparsers.add_parser(
        "harmonize",
        help=BENCHES["harmonize"].summary,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = parser.add_argument_group("experiment size")
    for option, text in (
        ("subjects", "phantom subjects in the cohort"),
        ("size", "voxels per edge of a phantom"),
        ("steps", "training steps of each learned harmonizer"),
    ):
        group.add_argument(
            f"--{option}", type=int, metavar="N", help=f"{text} (default: {DEFAULTS[option]}; --quick: {QUICK[option]})"
        )
    group.add_argument("--seed", type=int, default=0, help="seed of the first subject and of the noise (default: 0)")
    add_report_args(parser, NAME, quick=f"tiny run for tests: {QUICK}")
    return parser
