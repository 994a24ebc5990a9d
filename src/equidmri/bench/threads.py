"""``equidmri bench threads``: training time of ``deconv`` alone and beside a busy process, per thread setting.

The cases are below; how they run, and the options: :mod:`equidmri.bench.options.threads`
(``equidmri bench threads --help``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from equidmri.bench.baseline import check_baseline, child_env
from equidmri.bench.options.threads import QUICK_EPOCHS
from equidmri.bench.report import check_report_outputs, fmt, header_lines, start_record, write_report

CASES = {  # label: (extra deconv options, extra environment)
    "default": ([], {}),
    "--threads 1": (["--threads", "1"], {}),
    "ACTIVE": ([], {"OMP_WAIT_POLICY": "ACTIVE"}),
    "ACTIVE, --threads 1": (["--threads", "1"], {"OMP_WAIT_POLICY": "ACTIVE"}),
}
DATA = "small_64D"  # dipy's bundled volume (equidmri.data.REAL_VOLUMES), as the demo
BASELINE = "baseline default"
QUICK_CASES = ("default",)
BUSY_LOOP = "while True: pass"  # one busy core
CLEARED_ENV = ("OMP_NUM_THREADS", "EQUIDMRI_THREADS", "OMP_WAIT_POLICY")  # each case sets its own


def run_case(options: list[str], env: dict[str, str], epochs: int, baseline: Path | None) -> dict[str, Any]:
    """One ``deconv`` of ``small_64D``: fit and wall seconds, torch threads, load average at the end."""
    from equidmri.data import real_volume_paths  # dipy: after the parse

    dwi, bvals, bvecs = real_volume_paths(DATA)
    full_env = {k: v for k, v in child_env(baseline, **env).items() if k not in CLEARED_ENV or k in env}
    with tempfile.TemporaryDirectory(prefix="equidmri-threads-") as tmp:
        out = Path(tmp) / "out"
        argv = [
            sys.executable,
            "-m",
            "equidmri.cli.main",
            "deconv",
            "--dwi",
            str(dwi),
            "--bvals",
            str(bvals),
            "--bvecs",
            str(bvecs),
            "--out",
            str(out),
            "--epochs",
            str(epochs),
            "-q",
            *([] if baseline else ["--train-from-scratch"]),  # times training (a baseline tree predates the flag)
            *options,
        ]
        start = time.perf_counter()
        subprocess.run(argv, env=full_env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        record = json.loads((out / "run.json").read_text())
    return {
        "fit_s": round(record["timings"]["fit"], 3),
        "wall_s": round(wall, 3),
        "threads": record["threads"],
        "load_average_end": list(os.getloadavg()),
    }


def measure(
    cases: dict[str, tuple[list[str], dict[str, str]]], epochs: int, baseline: Path | None
) -> list[dict[str, Any]]:
    """Every case alone, then every case beside one busy process; one row per case."""
    rows = {label: {"case": label, "options": options, "env": env} for label, (options, env) in cases.items()}
    for condition in ("alone", "busy"):
        busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if condition == "busy" else None
        try:
            for label, (options, env) in cases.items():
                rows[label][condition] = run_case(options, env, epochs, baseline if label == BASELINE else None)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    return list(rows.values())


def render_markdown(record: dict[str, Any]) -> str:
    """The results page: fit and wall seconds per case, alone and beside the busy process."""
    lines = [
        *header_lines("Threads and OpenMP waiting on a shared CPU", record),
        f"`equidmri deconv` on dipy's `{DATA}`, {record['settings']['epochs']} epochs, one fresh process "
        "per run; `fit` is training + inference (from `run.json`), `wall` the whole command (start-up, "
        "imports, response, writing). Busy: beside one process that keeps one core busy. The load average "
        "(1 min) at the end of each run shows what else the machine was doing.",
        "",
        "| case | threads | fit alone (s) | fit busy (s) | wall alone (s) | wall busy (s) | load alone / busy |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        alone, busy = row["alone"], row["busy"]
        lines.append(
            f"| {row['case']} | {alone['threads']} | {fmt(alone['fit_s'], '.1f')}"
            f" | {fmt(busy['fit_s'], '.1f')} | {fmt(alone['wall_s'], '.1f')} | {fmt(busy['wall_s'], '.1f')}"
            f" | {alone['load_average_end'][0]:.1f} / {busy['load_average_end'][0]:.1f} |"
        )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Run the cases (``--quick``: the default only, 1 epoch) and write the JSON record and the page."""
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    check_baseline(args)
    check_report_outputs(args)
    cases = {label: CASES[label] for label in QUICK_CASES} if args.quick else dict(CASES)
    if args.baseline_src is not None:
        cases[BASELINE] = ([], {})
    epochs = QUICK_EPOCHS if args.quick else args.epochs
    record = start_record(args)
    record["settings"] = {"epochs": epochs, "baseline_src": args.baseline_src, "busy_loop": BUSY_LOOP}
    record["rows"] = measure(cases, epochs, args.baseline_src)
    write_report(args, record, render_markdown(record))
    return 0
