"""``equidmri bench threads``: training time of ``deconv`` alone and beside a busy process, per thread setting.

Each case runs ``equidmri deconv`` on dipy's ``small_64D`` for ``--epochs`` epochs in a fresh process and
reads the training time (``fit`` in its ``run.json``: training and inference) and the wall time of the
whole command. Every case runs twice: alone, and beside one busy process (a Python loop that keeps one
core busy, as another user's job would). The cases: the default (``--threads`` from the usable CPUs,
``OMP_WAIT_POLICY=PASSIVE``), ``--threads 1``, both with ``OMP_WAIT_POLICY=ACTIVE`` (threads spin while
they wait) and, with ``--baseline-src DIR``, the default of another checkout (e.g. the commit before the
change). "Alone" means no process of ours beside it: the load average of the machine is recorded with
every run.
"""

from __future__ import annotations

import argparse

from equidmri.bench.baseline import add_baseline_arg
from equidmri.bench.catalog import BENCHES
from equidmri.bench.report import add_report_args

NAME = "threads"
DEFAULT_EPOCHS = 5
QUICK_EPOCHS = 1


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench threads``."""
    parser = subparsers.add_parser(
        NAME,
        help=BENCHES["threads"].summary,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_report_args(parser, NAME, f"the default case only, {QUICK_EPOCHS} epoch")
    parser.add_argument(
        "--epochs", type=int, default=DEFAULT_EPOCHS, metavar="N", help="training epochs per run (default: %(default)s)"
    )
    add_baseline_arg(parser, "its default case is measured too")
    return parser
