"""The runs of ``equidmri bench cohort``: training throughput of ``equidmri train --cohort`` with 1 and 2
processes, and memory.

What it measures and its options: :mod:`equidmri.bench.options.cohort` (``equidmri bench cohort --help``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from equidmri.bench.options.cohort import DEFAULTS, QUICK
from equidmri.bench.report import (
    THREAD_ENV,
    check_report_outputs,
    fmt,
    header_lines,
    start_record,
    write_report,
)
from equidmri.dmri.io import save_nifti, save_text
from equidmri.sims.dataset import phantom_affine, save_gradients
from equidmri.sims.phantoms import make_phantom
from equidmri.sims.synthesis import make_protocol

BVALUE = 1000.0  # s/mm²
DIRECTIONS = 30  # per subject, its own set
SNR = 30.0  # b=0 signal of pure WM over the noise sigma
PROCESSES = (1, 2)
TIMEOUT_S = 3600  # one training run


def write_cohort(folder: Path, subjects: int, size: int, seed: int) -> Path:
    """``folder/cohort.tsv`` and ``subjects`` phantoms ``folder/sub-XX/`` (own directions, mask, noise)."""
    rng = np.random.default_rng(seed)
    affine = phantom_affine(size)
    rows = ["subject\tdwi\tbvals\tbvecs\tmask"]
    for number in range(subjects):
        name = f"sub-{number + 1:02d}"
        protocol = make_protocol(rng, n_b0=1, shells=(BVALUE,), directions_per_shell=DIRECTIONS)
        phantom = make_phantom(size, protocol, rng, snr=SNR)
        (folder / name).mkdir(parents=True)
        save_nifti(folder / name / "dwi.nii.gz", phantom.dwi, affine)
        save_nifti(folder / name / "mask.nii.gz", phantom.mask, affine)
        save_gradients(folder / name, "", protocol, affine, force=False)
        rows.append(f"{name}\t{name}/dwi.nii.gz\t{name}/bvals\t{name}/bvecs\t{name}/mask.nii.gz")
    return save_text(folder / "cohort.tsv", "\n".join(rows) + "\n")


def train_once(
    cohort: Path, processes: int | None, threads: int, settings: dict[str, Any], device: str, extra: list[str]
) -> dict[str, Any]:
    """One ``equidmri train`` in fresh processes (``processes`` None: without torchrun); its ``run.json``."""
    with tempfile.TemporaryDirectory(prefix="equidmri-cohort-") as tmp:
        out = Path(tmp) / "out"
        argv = ["train", "--cohort", os.fspath(cohort), "--out", os.fspath(out), "-q", "--device", device]
        argv += ["--epochs", str(settings["epochs"]), "--patch-size", str(settings["patch_size"])]
        argv += ["--threads", str(threads), *extra]
        if settings["widths"]:
            argv += ["--widths", *map(str, settings["widths"])]
        launcher = [sys.executable, "-m", "equidmri.cli.main"]
        if processes is not None:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
            launcher += [str(processes), "-m", "equidmri.cli.main"]
        env = {**os.environ, **{name: str(threads) for name in THREAD_ENV}}
        subprocess.run([*launcher, *argv], env=env, check=True, stdout=subprocess.DEVNULL, timeout=TIMEOUT_S)
        return json.loads((out / "run.json").read_text())


def throughput(record: dict[str, Any]) -> dict[str, Any]:
    """Patches per second of each epoch after the first, and their median."""
    patches = record["epoch_batches"]["per_process"] * record["processes"] * record["train"]["batch_size"]
    seconds = record["epoch_seconds"][1:] or record["epoch_seconds"]
    rates = [patches / s for s in seconds]
    return {
        "patches_per_epoch": patches,
        "epoch_seconds": record["epoch_seconds"],
        "patches_per_s": [round(r, 3) for r in rates],
        "median_patches_per_s": round(statistics.median(rates), 3),
        "final_loss": record["final_loss"]["total"],
    }


def measure_throughput(cohort: Path, settings: dict[str, Any], threads: int, device: str) -> list[dict[str, Any]]:
    """One row per case: the runs' throughputs and their median; repeats interleave the cases (same load)."""
    cases = [("one process", None)] + [(f"torchrun, {n} process{'es' if n > 1 else ''}", n) for n in PROCESSES]
    rows = [
        {"case": label, "processes": n or 1, "threads_per_process": max(1, threads // (n or 1)), "runs": []}
        for label, n in cases
    ]
    for _ in range(settings["repeats"]):
        for row, (_, n) in zip(rows, cases):
            record = train_once(cohort, n, row["threads_per_process"], settings, device, [])
            row["runs"].append({**throughput(record), "load_average_end": list(os.getloadavg())})
    for row in rows:
        row["median_patches_per_s"] = round(statistics.median(r["median_patches_per_s"] for r in row["runs"]), 3)
    return rows


def measure_memory(folder: Path, settings: dict[str, Any], threads: int, device: str) -> list[dict[str, Any]]:
    """Rank 0's memory after preparation and after one short epoch, per cohort size."""
    rows = []
    for subjects in settings["memory_subjects"]:
        cohort = write_cohort(folder / f"memory-{subjects}", subjects, settings["memory_size"], seed=1)
        per_subject = max(1, settings["memory_steps"] // subjects)
        extra = ["--patches-per-epoch", str(per_subject)]
        record = train_once(cohort, None, threads, {**settings, "epochs": 1}, device, extra)
        volumes = 1 + DIRECTIONS  # float32 values per voxel in signal.npy
        signal_mib = sum(int(np.prod(s["shape"])) * volumes * 4 for s in record["subjects"]) / 2**20
        rows.append(
            {
                "subjects": subjects,
                "size": settings["memory_size"],
                "signal_on_disk_mib": round(signal_mib, 1),
                "patches_per_subject": per_subject,
                "memory_mib": record["memory_mib"],
            }
        )
    return rows


def render_markdown(record: dict[str, Any]) -> str:
    """The results page: throughput per case, then memory per cohort size."""
    s = record["settings"]
    lines = [
        *header_lines("Cohort training: throughput with 1 and 2 processes, memory", record),
        f"`equidmri train --cohort` on a synthetic cohort of {s['subjects']} phantoms of {s['size']}³ voxels "
        f"(b=0 + {DIRECTIONS} own directions at b = {BVALUE:g} s/mm², SNR {SNR:g}), patches of {s['patch_size']}³ "
        f"voxels, batch 1 per process, {s['epochs']} epochs, network widths "
        f"{s['widths'] or 'default'}; {s['repeats']} repeat(s), cases interleaved. Throughput: patches per second "
        "over the epochs after the first (median per run, then median over the runs). The machine's "
        f"{record['machine']['threads']} threads are shared among the processes.",
        "",
        "| case | processes | threads each | patches/epoch | patches/s (median) | runs (patches/s) | load at their "
        "ends (1 min) | final loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in record["throughput"]:
        runs = ", ".join(fmt(r["median_patches_per_s"], ".2f") for r in row["runs"])
        loads = ", ".join(f"{r['load_average_end'][0]:.1f}" for r in row["runs"])
        lines.append(
            f"| {row['case']} | {row['processes']} | {row['threads_per_process']} | "
            f"{row['runs'][0]['patches_per_epoch']} | {fmt(row['median_patches_per_s'], '.2f')} | {runs} | "
            f"{loads} | {fmt(row['runs'][-1]['final_loss'], '.4g')} |"
        )
    base = record["throughput"][0]["median_patches_per_s"]
    lines += [
        "",
        "Speed-up over one process: "
        + ", ".join(f"{row['case']} {row['median_patches_per_s'] / base:.2f}×" for row in record["throughput"][1:])
        + ".",
        "",
        "## Memory (one process, rank 0)",
        "",
        f"One epoch of {s['memory_steps']} patches in all (spread over the subjects) on cohorts of "
        f"{s['memory_size']}³-voxel phantoms. The signal on disk "
        "is the prepared `subjects/*/signal.npy`; training memory-maps it. RssFile counts the pages of the "
        "mapped files (page cache, dropped under memory pressure), RssAnon what the process itself holds.",
        "",
        "| subjects | signal on disk (MiB) | peak RSS after preparation (MiB) | peak RSS after training (MiB) | "
        "RssAnon after training (MiB) | RssFile after training (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for row in record["memory"]:
        prepare, train = row["memory_mib"]["prepare"], row["memory_mib"]["train"]
        lines.append(
            f"| {row['subjects']} | {row['signal_on_disk_mib']:.1f} | {fmt(prepare.get('peak_rss_mib'), '.0f')} | "
            f"{fmt(train.get('peak_rss_mib'), '.0f')} | {fmt(train.get('rss_anon_mib'), '.0f')} | "
            f"{fmt(train.get('rss_file_mib'), '.0f')} |"
        )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Write the cohorts, time every case, measure memory, and write the JSON record and the page."""
    check_report_outputs(args)
    settings = dict(QUICK if args.quick else DEFAULTS)
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None and not args.quick:
            settings[key] = value
    record = start_record(args)
    record["settings"] = settings
    with tempfile.TemporaryDirectory(prefix="equidmri-bench-cohort-") as tmp:
        cohort = write_cohort(Path(tmp) / "throughput", settings["subjects"], settings["size"], seed=0)
        record["throughput"] = measure_throughput(cohort, settings, args.threads, args.device)
        record["memory"] = measure_memory(Path(tmp), settings, args.threads, args.device)
    write_report(args, record, render_markdown(record))
    return 0
