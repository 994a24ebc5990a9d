"""``equidmri bench cli``: how long the command line takes to answer ``--help`` and argument errors.

Each case runs ``python -m equidmri.cli.main ARGS`` in a fresh process ``--repeats`` times and records the
wall time from start to exit (interpreter start, imports, parsing; nothing is computed: every case stops
at a help text or a usage error, but ``methods``, which lists the methods). With ``--baseline-src DIR`` the
same cases also run with ``DIR`` (the ``src/`` directory of another checkout, e.g. the commit before a
change) first on ``PYTHONPATH``, interleaved run by run, so that both see the same machine load.
"""

from __future__ import annotations

import argparse

from equidmri.bench.baseline import add_baseline_arg
from equidmri.bench.catalog import BENCHES
from equidmri.bench.report import add_report_args

NAME = "cli"
DEFAULT_REPEATS = 5
QUICK_REPEATS = 1


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench cli``."""
    parser = subparsers.add_parser(
        NAME,
        help=BENCHES["cli"].summary,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_report_args(parser, NAME, f"two command lines, {QUICK_REPEATS} run each")
    parser.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        metavar="N",
        help="fresh processes per command line (default: %(default)s)",
    )
    add_baseline_arg(parser, "time its command line alongside")
    return parser
