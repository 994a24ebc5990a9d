"""Run a parsed subcommand: its log, the contention watch, and one line on stderr with the exit code when it fails.

Without torch: a subcommand that needs none (``methods``, ``evaluate``, ``phantom``) runs without loading it.
"""

from __future__ import annotations

import argparse
import logging
import sys

from equidmri.cli.commands import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE
from equidmri.cli.logs import command_logging
from equidmri.extras import MissingExtraError
from equidmri.recon.errors import TrainingDivergedError
from equidmri.runtime import ContentionWatch

logger = logging.getLogger(__name__)

USAGE_ERRORS = (ValueError, OSError, MissingExtraError)  # reported in one line with EXIT_USAGE (OSError: missing
# or existing files; MissingExtraError: a method whose optional dependency is not installed)


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed subcommand with its logging and a :class:`~equidmri.runtime.ContentionWatch`; report a
    failure in one line on stderr and return its exit code."""
    with command_logging(args.verbose, getattr(args, "quiet", False)), ContentionWatch():
        try:
            return args.run(args)
        except TrainingDivergedError as error:
            return _fail(args, error, EXIT_FAILURE)
        except BrokenPipeError:  # an OSError, but not the user's input: the reader of stdout left (cli.main)
            raise
        except USAGE_ERRORS as error:
            return _fail(args, error, EXIT_USAGE)
        except KeyboardInterrupt:
            sys.stderr.write(f"{args.prog}: interrupted\n")
            return EXIT_INTERRUPTED


def _fail(args: argparse.Namespace, error: BaseException, code: int) -> int:
    logger.debug("%s failed", args.prog, exc_info=error)
    sys.stderr.write(f"{args.prog}: error: {' '.join(str(error).split())}\n")
    return code
