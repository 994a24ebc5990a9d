"""``equidmri bench``: the benchmarks and experiments, one subcommand each (see :mod:`equidmri.bench`)."""

from __future__ import annotations

import argparse
import functools
import importlib
from collections.abc import Iterable

from equidmri.bench.catalog import BENCHES
from equidmri.cli.commands import COMMANDS


def add_parser(subparsers: argparse._SubParsersAction, benches: Iterable[str] = BENCHES) -> argparse.ArgumentParser:
    """Register ``bench`` and its subcommands; those in ``benches`` are built in full (importing their parser
    modules, :mod:`equidmri.bench.options`, and setting ``run`` and ``prog``, the name in error lines), the
    others only named, with their summary, for ``equidmri bench --help``."""
    parser = subparsers.add_parser("bench", help=COMMANDS["bench"], description=__doc__)
    commands = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    chosen = set(benches)
    for name, bench in BENCHES.items():
        if name in chosen:
            options = importlib.import_module(f"equidmri.bench.options.{bench.module}")
            command = getattr(options, bench.parser)(commands)
            command.set_defaults(run=functools.partial(run_bench, bench.module), prog=command.prog)
        else:
            commands.add_parser(name, help=bench.summary, add_help=False)
    return parser


def run_bench(module: str, args: argparse.Namespace) -> int:
    """Import ``equidmri.bench.<module>`` (most load torch), only now that the command runs, and run it."""
    return importlib.import_module(f"equidmri.bench.{module}").run(args)
