"""``equidmri bench``: the benchmarks and experiments, one subcommand each (see :mod:`equidmri.bench`)."""

from __future__ import annotations

import argparse

from equidmri.bench import layers, table

BENCHES = (layers, table)  # modules with ``add_parser(subparsers)``


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench`` and its subcommands."""
    parser = subparsers.add_parser("bench", help="benchmarks and experiments (results into docs/results/)",
                                   description=__doc__)
    benches = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for bench in BENCHES:
        bench.add_parser(benches)
    return parser
