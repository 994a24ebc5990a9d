"""``equidmri bench``: the benchmarks and experiments, one subcommand each (see :mod:`equidmri.bench`)."""

from __future__ import annotations

import argparse

from equidmri.bench import cli, cohort, efficiency, equivariance, fa, mnist, realdata, table, threads, throughput
from equidmri.cli.commands import COMMANDS

BENCHES = (  # each registers one subcommand
    efficiency.add_layers_parser,
    efficiency.add_unet_parser,
    throughput.add_parser,
    equivariance.add_parser,
    mnist.add_parser,
    fa.add_parser,
    table.add_parser,
    realdata.add_parser,
    cli.add_parser,
    threads.add_parser,
    cohort.add_parser,
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench`` and its subcommands."""
    parser = subparsers.add_parser("bench", help=COMMANDS["bench"], description=__doc__)
    benches = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for add_bench_parser in BENCHES:
        add_bench_parser(benches)
    return parser
