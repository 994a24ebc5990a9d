"""``equidmri bench cli``: how long the command line takes to answer ``--help`` and argument errors.

The cases are below; how they are timed, and the options: :mod:`equidmri.bench.options.cli`
(``equidmri bench cli --help``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from equidmri.bench.baseline import check_baseline, child_env
from equidmri.bench.options.cli import QUICK_REPEATS
from equidmri.bench.report import check_report_outputs, fmt, header_lines, start_record, write_report

CASES = (  # command lines after `equidmri`: every subcommand's help text and usage errors (a required option missing)
    ("--help",),
    ("--version",),
    ("deconv", "--help"),
    ("deconv",),
    ("predict", "--help"),
    ("predict",),
    ("train", "--help"),
    ("train",),
    ("demo", "--help"),
    ("methods", "--help"),
    ("methods",),  # the method list itself
    ("phantom", "--help"),
    ("evaluate", "--help"),
    ("evaluate",),
    ("fa", "train", "--help"),
    ("fa", "predict", "--help"),
    ("harmonize", "train", "--help"),
    ("harmonize", "apply", "--help"),
    ("denoise", "train", "--help"),
    ("denoise", "apply", "--help"),
    ("bench", "--help"),
    ("bench", "layers", "--help"),  # each benchmark's help and one bad argument of it
    ("bench", "layers", "--variants", "z"),
    ("bench", "unet", "--help"),
    ("bench", "unet", "--nsides", "x"),
    ("bench", "throughput", "--help"),
    ("bench", "throughput", "--epochs", "x"),
    ("bench", "equivariance", "--help"),
    ("bench", "equivariance", "--samples", "x"),
    ("bench", "mnist", "--help"),
    ("bench", "mnist", "--nside", "x"),
    ("bench", "fa", "--help"),
    ("bench", "fa", "--n-train", "x"),
    ("bench", "table", "--help"),
    ("bench", "table", "--out", "o"),  # --data is missing
    ("bench", "realdata", "--help"),
    ("bench", "realdata", "--volume", "x"),  # not NAME=DIR
    ("bench", "cli", "--help"),
    ("bench", "cli", "--repeats", "x"),
    ("bench", "threads", "--help"),
    ("bench", "threads", "--epochs", "x"),
    ("bench", "cohort", "--help"),
    ("bench", "cohort", "--subjects", "x"),
    ("bench", "pretrained", "--help"),
    ("bench", "pretrained", "--model"),
    ("bench", "harmonize", "--help"),
    ("bench", "harmonize", "--size", "x"),
    ("bench", "pq-layer", "--help"),
    ("bench", "pq-layer", "--cases", "x"),
    ("bench", "synthesis", "--help"),
    ("bench", "synthesis", "--epochs", "x"),
    ("bench", "lesions", "--help"),
    ("bench", "lesions", "--epochs", "x"),
    ("bench", "spherical-layers", "--help"),
    ("bench", "spherical-layers", "--seed", "x"),
)
QUICK_CASES = (("--help",), ("deconv",))
TARGET_S = 1.0  # s: "well under a second" (issue 22)


def time_command(argv: tuple[str, ...], python_path: Path | None) -> tuple[float, int]:
    """Wall seconds and exit code of one ``python -m equidmri.cli.main *argv`` (output discarded)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "equidmri.cli.main", *argv],
        env=child_env(python_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return time.perf_counter() - start, done.returncode


def measure(cases: tuple[tuple[str, ...], ...], repeats: int, baseline: Path | None) -> list[dict[str, Any]]:
    """One row per case: exit code and run times of this checkout (and of ``baseline``), medians in s."""
    sources = {"current": None} if baseline is None else {"current": None, "baseline": baseline}
    rows = []
    for argv in cases:
        row: dict[str, Any] = {"argv": list(argv)}
        times: dict[str, list[float]] = {name: [] for name in sources}
        for _ in range(repeats):
            for name, path in sources.items():
                seconds, code = time_command(argv, path)
                times[name].append(round(seconds, 4))
                row[f"{name}_exit_code"] = code
        for name, values in times.items():
            row[f"{name}_times_s"] = values
            row[f"{name}_median_s"] = round(statistics.median(values), 4)
        rows.append(row)
    return rows


def render_markdown(record: dict[str, Any]) -> str:
    """The results page: one row per command line, with the baseline's column when there is one."""
    compare = record["settings"]["baseline_src"] is not None
    lines = [
        *header_lines("Command-line start-up: help texts and argument errors", record),
        f"Median wall time of {record['settings']['repeats']} fresh processes per command line "
        f"(`python -m equidmri.cli.main ...`; interpreter start, imports, parsing). Target: well under "
        f"{TARGET_S:g} s.",
        "",
    ]
    if compare:
        lines += [
            f"Baseline: `{record['settings']['baseline_src']}` first on `PYTHONPATH`, run alternately with "
            "the current checkout.",
            "",
            "| command | exit | current (s) | baseline (s) | speed-up |",
            "|---|---|---|---|---|",
        ]
    else:
        lines += ["| command | exit | median (s) |", "|---|---|---|"]
    for row in record["rows"]:
        command = " ".join(["equidmri", *row["argv"]])
        cells = [f"`{command}`", str(row["current_exit_code"]), fmt(row["current_median_s"], ".2f")]
        if compare:
            cells += [
                fmt(row["baseline_median_s"], ".2f"),
                f"{row['baseline_median_s'] / row['current_median_s']:.1f}x",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Time every case (``--quick``: two cases, one run each) and write the JSON record and the page."""
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    check_baseline(args)
    check_report_outputs(args)
    cases, repeats = (QUICK_CASES, QUICK_REPEATS) if args.quick else (CASES, args.repeats)
    record = start_record(args)
    record["settings"] = {"repeats": repeats, "baseline_src": args.baseline_src, "target_s": TARGET_S}
    record["rows"] = measure(cases, repeats, args.baseline_src)
    write_report(args, record, render_markdown(record))
    return 0
