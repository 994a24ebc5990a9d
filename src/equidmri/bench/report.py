"""What every benchmark shares: its output options, the run record's header, child processes, atomic writes.

A benchmark's JSON record starts with :func:`start_record` (command, date, machine, load average) and is
closed by :func:`write_report`, which adds the final load average and writes the JSON and the markdown page
(atomically; an existing file is kept unless ``--force``). Markdown pages begin with :func:`header_lines`, so
that every figure states the command that produced it and the machine it ran on.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from equidmri.bench.machine import machine_info

RESULTS_DIR = Path("docs") / "results"  # default --out, relative to the working directory (the repository root)
DEFAULT_THREADS = 2  # the project's reference machine has 2 cores
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # torch, MKL, numpy's OpenBLAS


def add_report_args(parser: argparse.ArgumentParser, name: str, quick: str) -> None:
    """``--quick --out --force --threads --device -v``; the results are ``OUT/<name>.json``, ``OUT/<name>.md`` and
    figures ``OUT/<name>*.png``, with ``OUT`` by default ``docs/results`` of the working directory.

    ``quick`` says what ``--quick`` does.
    """
    group = parser.add_argument_group("run and results")
    group.add_argument("--quick", action="store_true", help=quick)
    group.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        metavar="DIR",
        help=f"folder of {name}.json, {name}.md and the figures, created if needed (default: %(default)s)",
    )
    group.add_argument("--force", action="store_true", help="overwrite existing result files")
    group.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        metavar="N",
        help="torch/BLAS threads of every measured process (default: %(default)s)",
    )
    group.add_argument(
        "--device", default="cpu", metavar="DEVICE", help="torch device, e.g. cpu or cuda:0 (default: %(default)s)"
    )
    group.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    parser.set_defaults(report_name=name)


def add_size_args(
    parser: argparse.ArgumentParser, texts: dict[str, str], defaults: dict[str, Any], quick: dict[str, Any]
) -> argparse._ArgumentGroup:
    """The group "experiment size": one integer option ``--<key>`` per key of ``texts`` (default None, filled in
    by :func:`start_figure_report` from ``defaults`` or ``quick``), its help stating both; returns the group."""
    group = parser.add_argument_group("experiment size")
    for key, text in texts.items():
        group.add_argument(
            f"--{key.replace('_', '-')}", type=int, metavar="N",
            help=f"{text} (default: {defaults[key]}; --quick: {quick[key]})",
        )  # fmt: skip
    return group


def report_path(args: argparse.Namespace, suffix: str) -> Path:
    """``OUT/<name><suffix>``: the JSON record (``".json"``), the page (``".md"``) or a figure (``".png"``)."""
    return Path(args.out) / f"{args.report_name}{suffix}"


def check_report_outputs(args: argparse.Namespace, *extra: Path) -> None:
    """Refuse, before any computation, result files that exist without ``--force``; then create ``--out``.

    ``extra`` are further outputs (e.g. the figure of :func:`start_figure_report`).

    Raises
    ------
    FileExistsError
        If the JSON record, the page or an ``extra`` path exists and not ``--force``.
    ValueError
        If ``--threads`` is below 1.
    """
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    from equidmri.dmri.io import check_outputs_free  # nibabel and dipy: not for the parsers of `bench cli`, `threads`

    check_outputs_free([report_path(args, ".json"), report_path(args, ".md"), *extra], args.force)
    Path(args.out).mkdir(parents=True, exist_ok=True)


def start_figure_report(args: argparse.Namespace, defaults: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Begin a run that also draws a figure: ``(figure path, record)``.

    Sets each option of ``defaults`` that the command line left at None, refuses existing outputs (the PNG
    figure ``OUT/<name>.png`` included, see :func:`check_report_outputs`), sets torch's threads to
    ``--threads`` and starts the record (:func:`start_record`).
    """
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    figure = report_path(args, ".png")
    check_report_outputs(args, figure)
    import torch  # not for the parsers of `bench cli` and `bench threads`

    torch.set_num_threads(args.threads)
    return figure, start_record(args)


def start_record(args: argparse.Namespace, **machine_extra: Any) -> dict[str, Any]:
    """``command``, ``date``, ``load_average.start`` and ``machine`` of a run (``args.argv`` after ``equidmri``)."""
    return {
        "command": shlex.join(["equidmri", *args.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": {"start": list(os.getloadavg())},
        "machine": machine_info(args.threads, device=args.device, **machine_extra),
    }


def header_lines(title: str, record: dict[str, Any]) -> list[str]:
    """Title, command, date, machine with load average, software versions; then a blank line."""
    m, load = record["machine"], record["load_average"]
    loads = " / ".join(f"{x:.2f}" for x in load["start"])
    if "end" in load:
        loads += " at the start, " + " / ".join(f"{x:.2f}" for x in load["end"]) + " at the end"
    return [
        f"# {title}",
        "",
        f"Command: `{record['command']}` (repository root)  ",
        f"Date: {record['date']}  ",
        f"Machine: {m['cpu_model']}, {m['cores']} CPU cores, {plural(m['threads'], 'thread')}, device `{m['device']}`; "
        f"load average (1/5/15 min) {loads}  ",
        f"Software: Python {m['python']}, torch {m['torch']}, equidmri {m['equidmri']} (git `{m['git_commit']}`)",
        "",
    ]


def write_report(args: argparse.Namespace, record: dict[str, Any], markdown: str) -> None:
    """Add ``load_average.end`` to ``record`` and write it to ``OUT/<name>.json``, ``markdown`` to ``OUT/<name>.md``."""
    from equidmri.dmri.io import save_json, save_text  # nibabel and dipy: not for the parsers

    record["load_average"]["end"] = list(os.getloadavg())
    json_path, markdown_path = report_path(args, ".json"), report_path(args, ".md")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    save_json(json_path, record, force=args.force)
    save_text(markdown_path, markdown if markdown.endswith("\n") else markdown + "\n", force=args.force)
    sys.stdout.write(f"wrote {json_path} and {markdown_path}\n")


def run_child(argv: Sequence[str], threads: int) -> dict[str, Any]:
    """Run ``equidmri <argv> --child-output FILE`` in a fresh Python process with ``threads`` threads.

    The child writes one JSON object to FILE, which is returned; a fresh process makes its peak resident
    memory its own. Raises ``subprocess.CalledProcessError`` if the child fails.
    """
    with tempfile.TemporaryDirectory(prefix="equidmri-bench-") as tmp:
        output = Path(tmp) / "child.json"
        env = {**os.environ, **{name: str(threads) for name in THREAD_ENV}}
        subprocess.run(
            [sys.executable, "-m", "equidmri.cli.main", *argv, "--child-output", str(output)], env=env, check=True
        )
        return json.loads(output.read_text())


def plural(count: int, noun: str) -> str:
    """``"1 thread"``, ``"2 threads"``: the count and the noun, with an ``s`` unless the count is 1."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def fmt(value: float | None, spec: str) -> str:
    """``format(value, spec)``, or an en dash for a missing value."""
    return "–" if value is None else format(value, spec)
