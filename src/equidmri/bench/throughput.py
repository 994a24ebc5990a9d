"""The stages of ``equidmri bench throughput``: inference throughput, training time and peak memory of SHD-TV
against dipy's CSD.

What it measures and its options: :mod:`equidmri.bench.options.throughput` (``equidmri bench throughput --help``).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dipy
import numpy as np
import torch

from equidmri.bench.options.throughput import NAME, QUICK, STAGES
from equidmri.bench.report import (
    THREAD_ENV,
    check_report_outputs,
    fmt,
    header_lines,
    plural,
    run_child,
    start_record,
    write_report,
)
from equidmri.data import real_volume_paths
from equidmri.dmri.io import load_dwi, save_json
from equidmri.methods import get_method
from equidmri.nn.layers.support import MaskSupport
from equidmri.nn.models.backbone import PROFILE_PREFIX
from equidmri.recon.infer import DEFAULT_TILE, tiles
from equidmri.recon.model import OUTPUT_LMAX, SHDModel
from equidmri.recon.pipeline import PreparedData, prepare

logger = logging.getLogger(__name__)

OURS, CSD = "SHD-TV", "CSD (lmax 8)"  # the two methods compared (equidmri.methods)
DEFAULT_DATA = "small_64D"  # dipy's bundled volume (equidmri.data.REAL_VOLUMES), as the demo
KIB_PER_MIB = 1024  # ru_maxrss is in KiB on Linux
ROWS = (  # (key, process, label); ratios pair each of ours with the CSD row of the same work
    ("train", "train", "ours: training (`SHDModel.fit`)"),
    ("ours_predict", "ours", "ours: inference (`predict`)"),
    ("ours_predict_peaks", "ours", "ours: inference + peaks"),
    ("csd_fit", "csd", "dipy CSD: fit"),
    ("csd_fit_peaks", "csd", "dipy CSD: fit + peaks"),
)
RATIO_PAIRS = {
    "ours_predict": "csd_fit",
    "ours_predict_peaks": "csd_fit_peaks",
    "csd_fit": "csd_fit",
    "csd_fit_peaks": "csd_fit_peaks",
}
TARGET_ROW = "ours_predict_peaks"  # the target compares whole pipelines: deconvolution + peaks
TOP_OPS = 8  # operators listed by self time in the inference profile
US_PER_S = 1e6  # torch.profiler reports microseconds
KINETO_QUIET_LEVEL = "6"  # KINETO_LOG_LEVEL above kineto's start/stop lines, which it prints at level 5 and below


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB


def inputs(args: argparse.Namespace) -> tuple[str, list[str]]:
    """Name of the data and its ``--dwi --bvals --bvecs [--mask]`` paths (default ``small_64D``)."""
    if args.dwi is None:
        return DEFAULT_DATA, [*real_volume_paths(DEFAULT_DATA), None]
    return str(args.dwi), [args.dwi, args.bvals, args.bvecs, args.mask]


def load_prepared(args: argparse.Namespace) -> PreparedData:
    """The data through the library: loaded, masked, shells and responses."""
    return prepare(load_dwi(*inputs(args)[1]))


def time_with_peaks(
    deconvolve: Callable[[], Any], peaks: Callable[[Any], Any], repeats: int, prefix: str
) -> dict[str, dict[str, Any]]:
    """Time ``deconvolve()`` and ``peaks(result)`` in the same runs, after one warm-up of each.

    Returns rows ``<prefix>`` (deconvolution alone: its times and the peak RSS read after the warm-up
    deconvolution, before any peak search) and ``<prefix>_peaks`` (deconvolution + peaks, with the peak
    search's own times).
    """
    result = deconvolve()
    rss_alone = peak_rss_mib()  # ru_maxrss only grows: this is the peak of the deconvolution alone
    peaks(result)
    alone, totals, peak_times = [], [], []
    for _ in range(repeats):
        result, deconvolve_s = stopwatch(deconvolve)
        peaks_s = stopwatch(lambda result=result: peaks(result))[1]
        alone.append(deconvolve_s)
        totals.append(deconvolve_s + peaks_s)
        peak_times.append(peaks_s)
    return {
        prefix: {"times_s": alone, "peak_rss_mib": rss_alone},
        f"{prefix}_peaks": {"times_s": totals, "peaks_times_s": peak_times},
    }


def stopwatch(call: Callable[[], Any]) -> tuple[Any, float]:
    """``call()`` and its wall-clock seconds."""
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def stage_baseline(args: argparse.Namespace, prepared: PreparedData) -> dict[str, Any]:
    """Data description only: the process did nothing but import and prepare."""
    shape = prepared.data.dwi.shape
    return {
        "data": {
            "name": inputs(args)[0],
            "shape": list(shape),
            "volume_voxels": int(np.prod(shape[:3])),
            "mask_voxels": int(prepared.mask.sum()),
            "mask_source": prepared.mask_source,
            "shells": prepared.shells.bvals.tolist(),
            "tissues": list(prepared.responses.tissues),
        },
        "prepare_s": prepared.timings,
    }


def stage_train(args: argparse.Namespace, prepared: PreparedData) -> dict[str, Any]:
    """Train on the volume (``SHDModel.fit``: training, then one whole-volume deconvolution)."""
    method = get_method(
        OURS,
        prepared.gtab,
        prepared.responses,
        epochs=args.epochs,
        patch_size=args.patch_size,
        widths=tuple(args.widths),
    )
    network = method.network_config
    model, build_s = stopwatch(method.build)
    fit, seconds = stopwatch(lambda: model.fit(prepared.data.dwi, prepared.mask, checkpoint_path=args.checkpoint))
    return {
        "build_model_s": build_s,
        "train": {"times_s": [seconds], "final_loss": fit.history[-1]["total"], "network": network.to_dict()},
    }


def stage_ours(args: argparse.Namespace, prepared: PreparedData) -> dict[str, Any]:
    """Inference with the trained checkpoint: ``predict``, then ``fit.peaks()`` on its result."""
    dwi, mask = prepared.data.dwi, prepared.mask
    model, load_s = stopwatch(lambda: SHDModel.from_checkpoint(args.checkpoint, prepared.gtab))
    rows = time_with_peaks(
        lambda: model.predict(dwi, mask, tile=DEFAULT_TILE),
        lambda fit: fit.peaks(OUTPUT_LMAX),
        args.repeats,
        "ours_predict",
    )
    return {
        "load_checkpoint_s": load_s,
        **rows,
        "profile": profile_inference(model, dwi, mask),
        "support_voxels": support_voxels(model.net, mask, DEFAULT_TILE),
    }


def profile_inference(model: SHDModel, dwi: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """One more ``predict`` under ``torch.profiler`` (CPU): where its time goes.

    Returns ``total_s`` (the profiled run's wall time, profiler overhead included), ``stages`` (seconds in
    each range the masked pass names, ``equidmri.nn.models.backbone.stage``, summed over tiles; disjoint)
    and ``operators`` (the ``TOP_OPS`` PyTorch operators with the most self time: name, seconds, calls).
    """
    os.environ.setdefault("KINETO_LOG_LEVEL", KINETO_QUIET_LEVEL)  # read when the profiler first starts
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        total_s = stopwatch(lambda: model.predict(dwi, mask, tile=DEFAULT_TILE))[1]
    events = profiler.key_averages()
    stages = {
        event.key.removeprefix(PROFILE_PREFIX): event.cpu_time_total / US_PER_S
        for event in events
        if event.key.startswith(PROFILE_PREFIX)
    }
    operators = sorted(
        (event for event in events if not event.key.startswith(PROFILE_PREFIX)),
        key=lambda event: event.self_cpu_time_total,
        reverse=True,
    )[:TOP_OPS]
    return {
        "total_s": total_s,
        "stages": stages,
        "operators": [
            {"name": event.key, "self_s": event.self_cpu_time_total / US_PER_S, "calls": event.count}
            for event in operators
        ],
    }


def support_voxels(net: torch.nn.Module, mask: np.ndarray, tile: int) -> dict[str, list[int]]:
    """Voxels the masked pass of ``net`` computes at each dilation ``k = 0 .. features_radius`` of ``mask``.

    ``tiled``: summed over the inference tiles of edge ``tile`` (each tile dilates its own mask voxels, so
    neighbouring tiles compute some voxels twice); ``one_tile``: one tile over the whole volume.
    """
    radius, mask_t = net.features_radius, torch.from_numpy(mask)
    tiled = [0] * (radius + 1)
    for _, wanted in tiles(mask_t, tile, net.receptive_radius):
        support = MaskSupport(wanted, radius)
        tiled = [total + support.size(k) for k, total in enumerate(tiled)]
    whole = MaskSupport(mask_t, radius)
    return {"tiled": tiled, "one_tile": [whole.size(k) for k in range(radius + 1)]}


def stage_csd(args: argparse.Namespace, prepared: PreparedData) -> dict[str, Any]:
    """dipy CSD with the prepared WM response and mask, then the same peak search on its result."""
    method = get_method(CSD, prepared.gtab, prepared.responses)
    return time_with_peaks(
        lambda: method.fit(prepared.data.dwi, prepared.mask), lambda fit: fit.peaks(), args.repeats, "csd_fit"
    )


STAGE_FUNCTIONS = {"baseline": stage_baseline, "train": stage_train, "ours": stage_ours, "csd": stage_csd}


def run_stage(args: argparse.Namespace) -> dict[str, Any]:
    """Child process: prepare the data, run one stage and return its record (with the peak RSS)."""
    torch.set_num_threads(args.threads)
    prepared = load_prepared(args)
    record = STAGE_FUNCTIONS[args.stage](args, prepared)
    record.update(
        peak_rss_mib=peak_rss_mib(),
        torch_threads=torch.get_num_threads(),
        thread_env={name: os.environ.get(name) for name in THREAD_ENV},
    )
    return record


def spawn_stage(stage: str, args: argparse.Namespace, checkpoint: Path) -> dict[str, Any]:
    """Run ``stage`` in a fresh Python process with the thread settings; return its record."""
    data = [] if args.dwi is None else ["--dwi", str(args.dwi), "--bvals", str(args.bvals), "--bvecs", str(args.bvecs)]
    data += [] if args.mask is None else ["--mask", str(args.mask)]
    logger.info("stage %s", stage)
    start = time.perf_counter()
    record = run_child(
        [
            "bench",
            NAME,
            *data,
            "--stage",
            stage,
            "--checkpoint",
            str(checkpoint),
            "--epochs",
            str(args.epochs),
            "--repeats",
            str(args.repeats),
            "--threads",
            str(args.threads),
            "--patch-size",
            str(args.patch_size),
            "--widths",
            *map(str, args.widths),
        ],
        args.threads,
    )
    logger.info("stage %s done in %.1f s", stage, time.perf_counter() - start)
    return record


def summarise(records: dict[str, dict[str, Any]], mask_voxels: int) -> list[dict[str, Any]]:
    """One row per measurement: median seconds, voxels/s, peak RSS and the throughput ratio to CSD."""
    baseline_rss = records["baseline"]["peak_rss_mib"]
    rows = []
    for key, process, label in ROWS:
        entry = records[process][key]
        median = statistics.median(entry["times_s"])
        rss = entry.get("peak_rss_mib", records[process]["peak_rss_mib"])
        row = {
            "stage": key,
            "label": label,
            "median_s": median,
            "times_s": entry["times_s"],
            "voxels_per_s": None if key == "train" else mask_voxels / median,
            "peak_rss_mib": rss,
            "peak_rss_increase_mib": rss - baseline_rss,
            "ratio_to_csd": None,
        }
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
    text = (
        f"Target (inference throughput ≥ dipy CSD, both with peaks): **{'met' if met else 'not met'}**, "
        f"{row['voxels_per_s']:.0f} vs {csd['voxels_per_s']:.0f} voxels/s, ratio {row['ratio_to_csd']:.3g}."
    )
    return {"met": met, "ratio": row["ratio_to_csd"], "text": text}


def render_markdown(result: dict[str, Any]) -> str:
    """The results page: table, verdict, command, machine, date and method."""
    m, s, d = result["machine"], result["settings"], result["data"]
    coverage = (
        f"The network runs on whole tiles (edge {s['tile']} voxels), here the whole volume of "
        f"{d['volume_voxels']} voxels; CSD on the {d['mask_voxels']} mask voxels only."
        if max(d["shape"][:3]) <= s["tile"]
        else ""
    )
    lines = [
        *header_lines(f"Deconvolution speed on `{d['name']}`: SHD-TV against dipy CSD", result),
        f"Threads: {s['threads']} per stage; dipy {m['dipy']}, numpy {m['numpy']}.",
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
        lines.append(
            f"| {row['label']} | {row['median_s']:.3f} | {fmt(row['voxels_per_s'], '.0f')} | "
            f"{row['peak_rss_mib']:.0f} ({round(row['peak_rss_increase_mib']):+d}) | "
            f"{fmt(row['ratio_to_csd'], '.3f')} |"
        )
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
        f"deconvolution). Inference rows are the median of {plural(s['repeats'], 'run')} after one warm-up; each "
        "run times "
        "the deconvolution and then the peak search on its result, so the rows without and with peaks come from "
        "the same runs; voxels/s = mask voxels / median seconds. Ours: `SHDModel.from_checkpoint(...).predict(dwi, "
        "mask)`, then `fit.peaks()`; CSD: the registry's `CSD (lmax 8)` (same WM response and mask), then "
        "`fit.peaks()`; both "
        f"peak searches use the lmax-{OUTPUT_LMAX} SH and the same settings. Ratios divide our throughput by CSD's "
        "for the same work (with peaks by with peaks, without by without). The predict-only and fit-only peak RSS "
        f"are read after the warm-up deconvolution, before any peak search in the same process. {coverage}",
        "",
        *profile_lines(result["profile"]),
        *support_lines(result["support_voxels"], s["tile"]),
    ]
    return "\n".join(lines)


def profile_lines(profile: dict[str, Any]) -> list[str]:
    """Markdown: the profiled inference's stages and top operators, as seconds and shares of its wall time."""
    total = profile["total_s"]
    rest = total - sum(profile["stages"].values())
    stages = sorted(profile["stages"].items(), key=lambda item: item[1], reverse=True)
    lines = [
        "## Where our inference time goes",
        "",
        f"One more `predict` in the inference process, under `torch.profiler` (CPU), took {total:.3f} s (profiler "
        "overhead included). Its stages are the ranges the masked pass names (summed over tiles, disjoint); "
        "levels count from the finest grid (level 0).",
        "",
        "| stage | s | share |",
        "|---|---:|---:|",
        *(f"| {name} | {seconds:.3f} | {seconds / total:.1%} |" for name, seconds in stages),
        f"| rest of `predict` (input preparation, tile copies, rescaling, SH fit) | {rest:.3f} | {rest / total:.1%} |",
        "",
        f"The {len(profile['operators'])} PyTorch operators with the most self time in that run:",
        "",
        "| operator | self s | share | calls |",
        "|---|---:|---:|---:|",
        *(
            f"| `{op['name']}` | {op['self_s']:.3f} | {op['self_s'] / total:.1%} | {op['calls']} |"
            for op in profile["operators"]
        ),
        "",
    ]
    return lines


def support_lines(voxels: dict[str, list[int]], tile: int) -> list[str]:
    """Markdown: voxels computed at each dilation of the mask, tiled and in one tile."""
    mask = voxels["one_tile"][0]
    lines = [
        "## Voxels the masked pass computes",
        "",
        "Each 3×3×3 convolution reads its input on the mask dilated by k voxels and writes its output on the mask "
        "dilated by k − 1 (k = 0 is the mask); the voxel-wise layers keep k. Tiles dilate their own mask voxels, so "
        f"with {tile}-voxel tiles some voxels are computed by two tiles.",
        "",
        f"| dilation k | voxels, {tile}-voxel tiles | voxels, one tile over the volume | tiled / mask |",
        "|---:|---:|---:|---:|",
        *(
            f"| {k} | {tiled} | {whole} | {tiled / mask:.2f} |"
            for k, (tiled, whole) in enumerate(zip(voxels["tiled"], voxels["one_tile"]))
        ),
        "",
    ]
    return lines


def run(args: argparse.Namespace) -> int:
    """Spawn the stages back to back, assemble the record and write it (or, in a child, run one stage)."""
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    for name in ("epochs", "repeats", "threads", "patch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if (args.dwi is None) != (args.bvals is None) or (args.dwi is None) != (args.bvecs is None):
        raise ValueError("--dwi, --bvals and --bvecs go together (or none of them, for small_64D)")
    if args.stage is not None:
        save_json(args.child_output, run_stage(args), force=True)
        return 0
    if args.dwi is not None:  # a damaged or inconsistent input fails here in one line, before any child or output
        load_dwi(*inputs(args)[1])
    check_report_outputs(args)
    result = start_record(args, dipy=dipy.__version__, numpy=np.__version__)
    with tempfile.TemporaryDirectory(prefix=f"{NAME}-") as workdir:
        records = {stage: spawn_stage(stage, args, Path(workdir) / "model.pt") for stage in STAGES}
    data = records["baseline"]["data"]
    rows = summarise(records, data["mask_voxels"])
    result.update(
        {
            "benchmark": NAME,
            "settings": {
                "epochs": args.epochs,
                "patch_size": args.patch_size,
                "repeats": args.repeats,
                "threads": args.threads,
                "tile": DEFAULT_TILE,
                "network": records["train"]["train"]["network"],
            },
            "data": data,
            "baseline_peak_rss_mib": records["baseline"]["peak_rss_mib"],
            "train_final_loss": records["train"]["train"]["final_loss"],
            "build_model_s": records["train"]["build_model_s"],
            "load_checkpoint_s": records["ours"]["load_checkpoint_s"],
            "stage_threads": {stage: records[stage]["torch_threads"] for stage in STAGES},
            "profile": records["ours"]["profile"],
            "support_voxels": records["ours"]["support_voxels"],
            "rows": rows,
            "records": [record_of(row, data["mask_voxels"]) for row in rows],
        }
    )
    result["verdict"] = verdict(rows)
    write_report(args, result, render_markdown(result))
    print(result["verdict"]["text"])
    return 0


def record_of(row: dict[str, Any], mask_voxels: int) -> dict[str, Any]:
    """A row in the efficiency benchmarks' record schema (``bench="throughput"``, ``pass="infer"``)."""
    return {
        "bench": "throughput",
        "variant": "csd" if row["stage"].startswith("csd") else "shd-tv",
        "nside": 8,
        "pass": "train" if row["stage"] == "train" else "infer",
        "stage": row["stage"],
        "median_s": row["median_s"],
        "peak_mem_mb": row["peak_rss_mib"],
        "voxels_per_s": row["voxels_per_s"],
        "mask_voxels": mask_voxels,
    }
