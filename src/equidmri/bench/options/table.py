"""The SHD paper's Table 1 on our phantoms: every method of :data:`equidmri.methods.METHODS`.

``equidmri bench table --data DIR --out RESULTS [--quick] [--resume] [--seeds S ...] [--methods NAME ...]
[--epochs N]``

For each method, angular resolution (high: all volumes; low: b=0 + 29 directions) and seed (learned
methods only), the peaks of the validation volume choose the F1-best relative threshold and the test
volume is scored at it (Daducci et al. 2014 via :mod:`equidmri.eval.metrics`). At low resolution the
learned methods train for angular super-resolution (SHD paper §4.2.1): input the low-resolution train
volume, target its high-resolution series; the iterative methods see only low-resolution volumes.
Learned methods report the mean and 95% confidence interval (Student t) over seeds. Writes
``RESULTS/table.md``, ``RESULTS/table.json`` and ``RESULTS/table.png`` (FPR against angular error, the
paper's Fig. 6 A/B). Each finished run is also kept in ``RESULTS/table_runs/`` (:class:`RunStore`): ``--resume``
reuses those made with the same settings, so that a table of many hours can be filled in several sittings.
``--quick`` runs on the central 12³ voxels of each volume with two epochs and tiny networks (a smoke test).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from equidmri.bench.catalog import BENCHES
from equidmri.bench.report import DEFAULT_THREADS
from equidmri.methods import METHODS


@dataclass(frozen=True)
class Settings:
    """Run settings: training ``epochs``, ``patch_size`` and network ``widths`` of the learned methods,
    ``rumba_iters`` iterations of RUMBA-SD, ``threads`` for MRtrix3."""

    epochs: int = 10  # at 40³ an epoch is 48 steps of one 8³ patch; SHD needs hundreds of steps
    patch_size: int = 8
    widths: tuple[int, ...] = (8, 16, 32, 64)
    rumba_iters: int = 100
    threads: int = 2


DEFAULT_SEEDS = (0, 1, 2)
QUICK = Settings(epochs=2, patch_size=6, widths=(4, 4, 4, 4), rumba_iters=5)  # --quick: a smoke run
QUICK_SIZE = 12  # voxels; --quick evaluates the central 12³ voxels of each volume
RUNS_DIR = "table_runs"  # RESULTS/table_runs: one file per finished run (RunStore)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench table``."""
    parser = subparsers.add_parser(
        "table",
        help=BENCHES["table"].summary,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, metavar="DIR", help="output of `equidmri phantom`")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="RESULTS", help="directory of table.md/json/png, created if needed"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke settings: the central {QUICK_SIZE}³ voxels, {QUICK.epochs} epochs, "
        "tiny networks, "
        f"{QUICK.rumba_iters} RUMBA iterations",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(DEFAULT_SEEDS),
        metavar="S",
        help="seeds of the learned methods (default: %(default)s)",
    )
    parser.add_argument("--methods", nargs="+", metavar="NAME", help=f"subset of {[m.name for m in METHODS]}")
    parser.add_argument("--epochs", type=int, metavar="N", help=f"training epochs (default {Settings().epochs})")
    parser.add_argument(
        "--rumba-iters", type=int, metavar="N", help=f"RUMBA-SD iterations (default {Settings().rumba_iters})"
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing results and make every run again")
    parser.add_argument(
        "--resume",
        action="store_true",
        help=f"reuse the runs stored in RESULTS/{RUNS_DIR}/ by an earlier invocation with the same "
        "settings, make the missing ones, and rewrite the table from all of them",
    )
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, metavar="N", help="torch/MRtrix3 threads (default: %(default)s)"
    )
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    parser.set_defaults(report_name="table")
    return parser
