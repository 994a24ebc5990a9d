"""equidmri: spatio-hemispherical fODF deconvolution of diffusion MRI (SHD, SHD-TV) from the command line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterable, Sequence

from equidmri import __version__
from equidmri.bench.catalog import BENCHES
from equidmri.cli.commands import COMMANDS, EXIT_BROKEN_PIPE, EXIT_INTERRUPTED
from equidmri.cli.runner import run_command
from equidmri.runtime import retain_freed_memory, set_passive_wait


def build_parser(commands: Iterable[str] = COMMANDS, benches: Iterable[str] = BENCHES) -> argparse.ArgumentParser:
    """The ``equidmri`` parser; the subcommands in ``commands`` (and the benchmarks of ``equidmri bench`` in
    ``benches``) are built in full, importing their modules, the others only named, with their summary, for
    the help texts."""
    parser = argparse.ArgumentParser(prog="equidmri", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = set(commands)
    for name, summary in COMMANDS.items():
        if name not in chosen:
            subparsers.add_parser(name, help=summary, add_help=False)
            continue
        module = importlib.import_module(f"equidmri.cli.{name}")
        if name == "bench":  # its subcommands live in several modules: build only those chosen
            module.add_parser(subparsers, benches)
        else:
            module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand and return the exit code.

    0 on success, 1 when the computation failed (diverged training), 2 for bad input or options
    (one line ``equidmri <command>: error: ...`` on stderr, nothing written), 130 when interrupted
    (one line, also during start-up), 141 without a word when the reader of stdout closed it early
    (``equidmri methods | head -1``). Only the named subcommand's module (and benchmark's) is imported, after
    ``OMP_WAIT_POLICY`` is set (:func:`equidmri.runtime.set_passive_wait`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _parse_and_run(argv)
        sys.stdout.flush()  # a closed pipe shows here, where it is caught, rather than at exit
        return code
    except KeyboardInterrupt:
        sys.stderr.write("equidmri: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE


def _parse_and_run(argv: list[str]) -> int:
    set_passive_wait()
    words = [word for word in argv if not word.startswith("-")]  # COMMAND [BENCH] ...
    command, bench = (words + [None, None])[:2]
    try:
        parser = build_parser([command] if command in COMMANDS else [], [bench] if bench in BENCHES else [])
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version and usage errors; argparse already wrote the message
        return stop.code if isinstance(stop.code, int) else 0
    args.argv = argv
    retain_freed_memory()  # large feature maps reuse freed memory instead of faulting in fresh pages
    return run_command(args)


def _discard_stdout() -> None:
    """Point file descriptor 1 at the null device, so that flushing what is left of stdout at exit neither
    fails nor prints a traceback (Python documentation, signal module, "Note on SIGPIPE")."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (an in-process capture): nothing to redirect
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
