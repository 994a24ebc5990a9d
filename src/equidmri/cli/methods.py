"""``equidmri methods``: the registered fODF methods, one line each (name, kind, availability, summary, source)."""

from __future__ import annotations

import argparse
import sys

from equidmri.cli.commands import COMMANDS, EXIT_OK
from equidmri.methods import DEFAULT_METHOD, METHODS


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``methods``."""
    parser = subparsers.add_parser("methods", help=COMMANDS["methods"], description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    parser.set_defaults(run=run, prog=parser.prog)
    return parser


def run(args: argparse.Namespace) -> int:
    """Write one line per method to stdout."""
    width = max(len(m.name) for m in METHODS)
    for method in METHODS:
        kind = "learned" if method.learned else "iterative"
        reason = method.unavailable()
        missing = "" if reason is None else f" [{reason}]"
        default = " (default)" if method.name == DEFAULT_METHOD else ""
        sys.stdout.write(f"{method.name:<{width}}  {kind:<9}  {method.summary}{default}; {method.source}{missing}\n")
    return EXIT_OK
