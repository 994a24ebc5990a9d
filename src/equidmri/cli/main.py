"""equidmri: spatio-hemispherical fODF deconvolution of diffusion MRI (SHD, SHD-TV) from the command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from equidmri import __version__
from equidmri.cli import bench, deconv, demo, evaluate, fa, methods, phantom, predict
from equidmri.cli.common import run_command
from equidmri.runtime import retain_freed_memory

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def build_parser() -> argparse.ArgumentParser:
    """The ``equidmri`` parser with one subparser per command."""
    parser = argparse.ArgumentParser(prog="equidmri", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (deconv, methods, predict, demo, phantom, evaluate, fa, bench):
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand and return the exit code.

    0 on success, 1 when the computation failed (diverged training), 2 for bad input or options
    (one line ``equidmri <command>: error: ...`` on stderr, nothing written), 130 when interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, --version and usage errors; argparse already wrote the message
        return stop.code if isinstance(stop.code, int) else 0
    args.argv = argv
    retain_freed_memory()  # large feature maps reuse freed memory instead of faulting in fresh pages
    logging.basicConfig(format=LOG_FORMAT)
    logging.getLogger("equidmri").setLevel(max(logging.DEBUG, logging.WARNING - 10 * args.verbose))
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
