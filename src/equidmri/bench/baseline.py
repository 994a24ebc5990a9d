"""Benchmarks that time this checkout against another one: the ``--baseline-src`` option and its environment."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_baseline_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """``--baseline-src DIR``; ``what`` says what is measured with it."""
    parser.add_argument(
        "--baseline-src",
        type=Path,
        metavar="DIR",
        help=f"src/ directory of another checkout (e.g. the commit before a change): {what}",
    )


def check_baseline(args: argparse.Namespace) -> None:
    """Refuse a ``--baseline-src`` without an ``equidmri`` package, before any measurement.

    Raises
    ------
    FileNotFoundError
        If ``args.baseline_src`` is set and holds no ``equidmri`` directory.
    """
    if args.baseline_src is not None and not (args.baseline_src / "equidmri").is_dir():
        raise FileNotFoundError(f"--baseline-src {args.baseline_src} holds no equidmri package")


def child_env(baseline: Path | None, **variables: str) -> dict[str, str]:
    """This process's environment with ``variables`` set, and ``baseline`` (if any) first on ``PYTHONPATH``."""
    env = os.environ | variables
    if baseline is not None:
        env["PYTHONPATH"] = os.pathsep.join([os.fspath(baseline), *filter(None, [env.get("PYTHONPATH")])])
    return env
