"""Training time, inference throughput and peak memory of SHD-TV against dipy's CSD on ``small_64D``.

Usage::

    python benchmarks/deconv_small64d.py [--epochs N] [--repeats R] [--threads T] [--json PATH] [--markdown PATH]
                                         [--widths C ...] [--patch-size VOXELS]

``--widths`` and ``--patch-size`` exist for quick runs (the test); the defaults are the library's.

One run measures, back to back and each in a fresh subprocess (so that its peak resident memory belongs to
that stage alone):

0. ``baseline``: imports and ``load_dwi`` + ``prepare`` only (every stage starts with the same work);
1. ``train``: ``SHDModel(...).fit`` for ``--epochs`` epochs, checkpoint in a temporary directory;
2. ``ours``: ``SHDModel.from_checkpoint(...).predict(dwi, mask)``, then the same with ``fit.peaks()``;
3. ``csd``: ``fit_csd`` (dipy CSD, lmax 8, the same WM response and mask), then the same with ``find_peaks``.

Inference times are the median of ``--repeats`` runs after one warm-up; throughput is mask voxels per
median second and the ratios are ours / CSD on the same volume in the same run. Every process gets the same
``--threads`` (``torch.set_num_threads`` and ``OMP/MKL/OPENBLAS_NUM_THREADS``). Writes a JSON record and a
markdown table (by default into ``docs/results/``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dipy
import numpy as np
import torch
from dipy.data import get_fnames

from equidmri.cli.demo import DEMO_DATA, DEMO_EPOCHS
from equidmri.dmri.baselines import fit_csd
from equidmri.dmri.io import load_dwi
from equidmri.dmri.peaks import find_peaks
from equidmri.recon.infer import DEFAULT_TILE
from equidmri.recon.model import OUTPUT_LMAX, NetworkConfig, SHDModel
from equidmri.recon.pipeline import PreparedData, prepare
from equidmri.recon.train import TrainConfig
from equidmri.bench import machine

logger = logging.getLogger("deconv_small64d")

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parent.parent
RESULTS = REPO / "docs" / "results"
NAME = "deconv_small64d"
DEFAULT_REPEATS = 5  # timed runs per inference measurement, after one warm-up
DEFAULT_THREADS = 2  # CPU threads for every stage (the project's reference machine has 2 cores)
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # torch, MKL and numpy's OpenBLAS
KIB_PER_MIB = 1024  # ru_maxrss is in KiB on Linux
STAGES = ("baseline", "train", "ours", "csd")
ROWS = (  # (key, process, label); ratios pair each of ours with the CSD row of the same work
    ("train", "train", "ours: training (`SHDModel.fit`)"),
    ("ours_predict", "ours", "ours: inference (`predict`)"),
    ("ours_predict_peaks", "ours", "ours: inference + peaks"),
    ("csd_fit", "csd", "dipy CSD: fit"),
    ("csd_fit_peaks", "csd", "dipy CSD: fit + peaks"),
)
RATIO_PAIRS = {"ours_predict": "csd_fit", "ours_predict_peaks": "csd_fit_peaks",
               "csd_fit": "csd_fit", "csd_fit_peaks": "csd_fit_peaks"}
TARGET_ROW = "ours_predict_peaks"  # the target compares whole pipelines: deconvolution + peaks


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB


def load_prepared() -> PreparedData:
    """``small_64D`` through the library: loaded, masked, shells and responses."""
    return prepare(load_dwi(*get_fnames(name=DEMO_DATA)))


def time_repeats(work: Callable[[], dict[str, float]], repeats: int) -> dict[str, list[float]]:
    """Run ``work`` once as a warm-up, then ``repeats`` times; ``work`` returns seconds per part."""
    work()
    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        for part, seconds in work().items():
            times.setdefault(part, []).append(seconds)
    return times


def stopwatch(call: Callable[[], Any]) -> tuple[Any, float]:
    """``call()`` and its wall-clock seconds."""
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def stage_baseline(args: argparse.Namespace, prepared: PreparedData) -> dict[str, Any]:
    """Data description only: the process did nothing but import and prepare."""
    shape = prepared.data.dwi.shape
    return {"data": {"name": DEMO_DATA, "shape": list(shape), "volume_voxels": int(np.prod(shape[:3])),
                     "mask_voxels": int(prepared.mask.sum()), "mask_source": prepared.mask_source,
                     "shells": prepared.shells.bvals.tolist(), "tissues": list(prepared.responses.tissues)},
            "prepare_s": prepared.timings}


def stage_train(args: argparse.Namespace, prepared: PreparedData) -> dict[str, Any]:
    """Train on the volume (``SHDModel.fit``: training, then one whole-volume deconvolution)."""
    network = NetworkConfig(widths=tuple(args.widths))
    model, build_s = stopwatch(lambda: SHDModel(prepared.gtab, prepared.responses, network,
                                                TrainConfig(epochs=args.epochs, patch_size=args.patch_size)))
    fit, seconds = stopwatch(lambda: model.fit(prepared.data.dwi, prepared.mask, checkpoint_path=args.checkpoint))
    return {"build_model_s": build_s,
            "train": {"times_s": [seconds], "final_loss": fit.history[-1]["total"], "network": network.to_dict()}}


def stage_ours(args: argparse.Namespace, prepared: PreparedData) -> dict[str, Any]:
    """Inference with the trained checkpoint: ``predict`` alone, then ``predict`` + ``peaks``."""
    dwi, mask = prepared.data.dwi, prepared.mask
    model, load_s = stopwatch(lambda: SHDModel.from_checkpoint(args.checkpoint, prepared.gtab))

    def predict() -> dict[str, float]:
        return {"total": stopwatch(lambda: model.predict(dwi, mask, tile=DEFAULT_TILE))[1]}

    def predict_peaks() -> dict[str, float]:
        fit, predict_s = stopwatch(lambda: model.predict(dwi, mask, tile=DEFAULT_TILE))
        peaks_s = stopwatch(lambda: fit.peaks(OUTPUT_LMAX))[1]
        return {"total": predict_s + peaks_s, "peaks": peaks_s}

    alone = time_repeats(predict, args.repeats)
    rss_alone = peak_rss_mib()  # ru_maxrss only grows: this is the peak of the predict-only phase
    with_peaks = time_repeats(predict_peaks, args.repeats)
    return {"load_checkpoint_s": load_s,
            "ours_predict": {"times_s": alone["total"], "peak_rss_mib": rss_alone},
            "ours_predict_peaks": {"times_s": with_peaks["total"], "peaks_times_s": with_peaks["peaks"]}}


def stage_csd(args: argparse.Namespace, prepared: PreparedData) -> dict[str, Any]:
    """dipy CSD with the prepared WM response and mask: the fit alone, then fit + the same peak search."""
    dwi, gtab, mask = prepared.data.dwi, prepared.gtab, prepared.mask
    response = prepared.responses.dipy_wm_response()

    def fit() -> dict[str, float]:
        return {"total": stopwatch(lambda: fit_csd(dwi, gtab, response, mask, lmax=OUTPUT_LMAX))[1]}

    def fit_peaks() -> dict[str, float]:
        fodf_sh, fit_s = stopwatch(lambda: fit_csd(dwi, gtab, response, mask, lmax=OUTPUT_LMAX))
        peaks_s = stopwatch(lambda: find_peaks(fodf_sh, mask))[1]
        return {"total": fit_s + peaks_s, "peaks": peaks_s}

    alone = time_repeats(fit, args.repeats)
    rss_alone = peak_rss_mib()
    with_peaks = time_repeats(fit_peaks, args.repeats)
    return {"csd_fit": {"times_s": alone["total"], "peak_rss_mib": rss_alone},
            "csd_fit_peaks": {"times_s": with_peaks["total"], "peaks_times_s": with_peaks["peaks"]}}


STAGE_FUNCTIONS = {"baseline": stage_baseline, "train": stage_train, "ours": stage_ours, "csd": stage_csd}


def run_stage(args: argparse.Namespace) -> int:
    """Child process: prepare the data, run one stage and write its record (with the peak RSS) as JSON."""
    torch.set_num_threads(args.threads)
    prepared = load_prepared()
    record = STAGE_FUNCTIONS[args.stage](args, prepared)
    record.update(peak_rss_mib=peak_rss_mib(), torch_threads=torch.get_num_threads(),
                  thread_env={name: os.environ.get(name) for name in THREAD_ENV})
    Path(args.stage_output).write_text(json.dumps(record))
    return 0


def spawn_stage(stage: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Run ``stage`` in a fresh Python process with the thread settings; return its record."""
    output = workdir / f"{stage}.json"
    command = [sys.executable, str(SCRIPT), "--stage", stage, "--stage-output", str(output),
               "--checkpoint", str(workdir / "model.pt"), "--epochs", str(args.epochs),
               "--repeats", str(args.repeats), "--threads", str(args.threads), "--patch-size", str(args.patch_size),
               "--widths", *map(str, args.widths)]
    env = {**os.environ, **{name: str(args.threads) for name in THREAD_ENV}}
    logger.info("stage %s", stage)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True)
    logger.info("stage %s done in %.1f s", stage, time.perf_counter() - start)
    return json.loads(output.read_text())


def machine_info(threads: int) -> dict[str, Any]:
    """CPU model, cores, threads and library versions (dipy and numpy too)."""
    return machine.machine_info(threads, dipy=dipy.__version__, numpy=np.__version__)


def summarise(records: dict[str, dict[str, Any]], mask_voxels: int) -> list[dict[str, Any]]:
    """One row per measurement: median seconds, voxels/s, peak RSS and the throughput ratio to CSD."""
    baseline_rss = records["baseline"]["peak_rss_mib"]
    rows = []
    for key, process, label in ROWS:
        entry = records[process][key]
        median = statistics.median(entry["times_s"])
        rss = entry.get("peak_rss_mib", records[process]["peak_rss_mib"])
        row = {"stage": key, "label": label, "median_s": median, "times_s": entry["times_s"],
               "voxels_per_s": None if key == "train" else mask_voxels / median,
               "peak_rss_mib": rss, "peak_rss_increase_mib": rss - baseline_rss, "ratio_to_csd": None}
        if "peaks_times_s" in entry:
            row["peaks_median_s"] = statistics.median(entry["peaks_times_s"])
        rows.append(row)
    by_key = {row["stage"]: row for row in rows}
    for key, reference in RATIO_PAIRS.items():
        by_key[key]["ratio_to_csd"] = by_key[key]["voxels_per_s"] / by_key[reference]["voxels_per_s"]
    return rows


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether our inference + peaks throughput reaches dipy CSD's (fit + peaks)."""
    row = next(r for r in rows if r["stage"] == TARGET_ROW)
    csd = next(r for r in rows if r["stage"] == RATIO_PAIRS[TARGET_ROW])
    met = row["ratio_to_csd"] >= 1.0
    text = (f"Target (inference throughput ≥ dipy CSD, both with peaks): **{'met' if met else 'not met'}**, "
            f"{row['voxels_per_s']:.0f} vs {csd['voxels_per_s']:.0f} voxels/s, ratio {row['ratio_to_csd']:.3g}.")
    return {"met": met, "ratio": row["ratio_to_csd"], "text": text}


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def render_markdown(result: dict[str, Any]) -> str:
    """The results page: table, verdict, command, machine, date and method."""
    m, s, d = result["machine"], result["settings"], result["data"]
    coverage = (f"The network runs on whole tiles (edge {s['tile']} voxels), here the whole volume of "
                f"{d['volume_voxels']} voxels; CSD on the {d['mask_voxels']} mask voxels only."
                if max(d["shape"][:3]) <= s["tile"] else "")
    lines = [
        f"# Deconvolution speed on `{d['name']}`: SHD-TV against dipy CSD",
        "",
        f"Command: `{result['command']}` (repository root)  ",
        f"Date: {result['date']}  ",
        f"Machine: {m['cpu_model']}, {m['cores']} CPU cores, {s['threads']} threads per stage; load average "
        f"(1/5/15 min) {' / '.join(f'{x:.2f}' for x in result['load_average']['start'])} at the start, "
        f"{' / '.join(f'{x:.2f}' for x in result['load_average']['end'])} at the end  ",
        f"Software: Python {m['python']}, torch {m['torch']}, dipy {m['dipy']}, numpy {m['numpy']}, "
        f"equidmri {m['equidmri']} (git `{m['git_commit']}`)",
        "",
        f"Data: `{d['name']}`, {'×'.join(map(str, d['shape'][:3]))} voxels × {d['shape'][3]} volumes, shells "
        f"{[round(b) for b in d['shells']]} s/mm², {d['mask_source']} "
        f"mask of {d['mask_voxels']} voxels. Network: `{s['network']['model']}`, widths {s['network']['widths']}, "
        f"training epochs: {s['epochs']}, patch edge {s['patch_size']} voxels (clipped to the volume); "
        f"inference tile: {s['tile']} voxels.",
        "",
        "| stage | median s | voxels/s | peak RSS MiB (increase over baseline) | throughput ratio to CSD |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['label']} | {row['median_s']:.3f} | {_fmt(row['voxels_per_s'], '.0f')} | "
                     f"{row['peak_rss_mib']:.0f} ({round(row['peak_rss_increase_mib']):+d}) | "
                     f"{_fmt(row['ratio_to_csd'], '.3f')} |")
    lines += [
        "",
        result["verdict"]["text"],
        "",
        f"Not in the rows: building the model (geometry precomputation) took {result['build_model_s']:.2f} s "
        f"before training and loading the checkpoint {result['load_checkpoint_s']:.2f} s before inference; "
        f"final training loss {result['train_final_loss']:.4g}.",
        "",
        "Method. Each stage runs in a fresh Python process, one after the other: a baseline process that only "
        "imports the libraries and runs `load_dwi` + `prepare` (peak RSS "
        f"{result['baseline_peak_rss_mib']:.0f} MiB), then training, our inference and dipy CSD, each doing the "
        "same preparation first. Training is one `SHDModel.fit` run (which ends with one whole-volume "
        f"deconvolution). Inference rows are the median of {s['repeats']} runs after one warm-up; voxels/s = mask "
        "voxels / median seconds. Ours: `SHDModel.from_checkpoint(...).predict(dwi, mask)`, then the same plus "
        "`fit.peaks()`; CSD: `fit_csd` (lmax 8, same WM response and mask), then the same plus `find_peaks`; both "
        f"peak searches use the lmax-{OUTPUT_LMAX} SH and the same settings. Ratios divide our throughput by CSD's "
        "for the same work (with peaks by with peaks, without by without). The predict-only and fit-only peak RSS "
        f"are read before the peak search starts in the same process. {coverage}",
        "",
    ]
    return "\n".join(lines)


def run_benchmark(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Spawn the stages back to back and assemble the record."""
    load_start = os.getloadavg()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix=f"{NAME}-") as workdir:
        records = {stage: spawn_stage(stage, args, Path(workdir)) for stage in STAGES}
    data = records["baseline"]["data"]
    rows = summarise(records, data["mask_voxels"])
    result = {
        "benchmark": NAME,
        "command": shlex.join(["python", os.path.relpath(SCRIPT, REPO), *argv]),
        "date": date,
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "machine": machine_info(args.threads),
        "settings": {"epochs": args.epochs, "patch_size": args.patch_size, "repeats": args.repeats,
                     "threads": args.threads, "tile": DEFAULT_TILE,
                     "network": records["train"]["train"]["network"]},
        "data": data,
        "baseline_peak_rss_mib": records["baseline"]["peak_rss_mib"],
        "train_final_loss": records["train"]["train"]["final_loss"],
        "build_model_s": records["train"]["build_model_s"],
        "load_checkpoint_s": records["ours"]["load_checkpoint_s"],
        "stage_threads": {stage: records[stage]["torch_threads"] for stage in STAGES},
        "rows": rows,
    }
    result["verdict"] = verdict(rows)
    return result


def write_text(path: Path, text: str) -> None:
    """Atomic write (temporary file in the same directory, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help="training epochs (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help="timed inference runs after one warm-up (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="CPU threads of every stage (default: %(default)s)")
    parser.add_argument("--widths", type=int, nargs="+", default=list(NetworkConfig().widths),
                        help="channels per U-Net level (default: %(default)s, the library's)")
    parser.add_argument("--patch-size", type=int, default=TrainConfig().patch_size,
                        help="edge of the training patches, voxels (default: %(default)s, the library's)")
    parser.add_argument("--json", type=Path, default=RESULTS / f"{NAME}.json",
                        help="JSON output (default: %(default)s)")
    parser.add_argument("--markdown", type=Path, default=RESULTS / f"{NAME}.md",
                        help="markdown output (default: %(default)s)")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # internal: run one stage (child process)
    parser.add_argument("--stage-output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("epochs", "repeats", "threads", "patch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.stage is not None:
        return run_stage(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = run_benchmark(args, argv)
    write_text(args.json, json.dumps(result, indent=2) + "\n")
    write_text(args.markdown, render_markdown(result))
    sys.stdout.write(f"{result['verdict']['text']}\nwrote {args.json} and {args.markdown}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
