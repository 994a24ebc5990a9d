"""The measurements of ``equidmri bench layers`` and ``equidmri bench unet``: one E(3) x SO(3) layer and the
U-Net along the SHD paper's Fig. 4 ablation.

What they measure, the variants and the options: :mod:`equidmri.bench.options.efficiency` (the ``--help`` of
each command).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from equidmri.bench.options.efficiency import (
    BENCHES,
    DEFAULT_REPEATS,
    EDGE,
    QUICK_REPEATS,
    SCALING_NSIDE,
    VARIANTS,
)
from equidmri.bench.report import (
    check_report_outputs,
    fmt,
    header_lines,
    run_child,
    start_record,
    write_report,
)
from equidmri.nn.blocks import fold_batchnorm
from equidmri.nn.layers import SpatioSphericalConv, SphereGrid
from equidmri.nn.models import SHDUNet

logger = logging.getLogger(__name__)

PASSES = ("fwd", "fwdbwd")
CHANNELS = 16  # in and out channels of the benchmarked layer
UNET_IN_CHANNELS = 1
CHEB_ORDER = 5  # SHD default
MIN_FIT_VERTICES = 24  # the V-exponent fit leaves out nside 1, where fixed overheads dominate
KIB_PER_MIB = 1024
BYTES_PER_MIB = 1024**2


def build_module(bench: str, variant: str, nside: int) -> nn.Module:
    """The measured module: a 16 -> 16 layer or the U-Net, in ``variant``'s form."""
    _, hemisphere, method, spatial = VARIANTS[variant]
    if bench == "layers":
        return SpatioSphericalConv(
            CHANNELS, CHANNELS, SphereGrid(nside, hemisphere), cheb_order=CHEB_ORDER, method=method, spatial=spatial
        )
    return SHDUNet(
        UNET_IN_CHANNELS, 0, nside=nside, cheb_order=CHEB_ORDER, hemisphere=hemisphere, method=method, spatial=spatial
    )


def make_input(bench: str, module: nn.Module, edge: int, device: torch.device, backward: bool) -> Tensor:
    """Random input of ``module`` on an ``edge``³ volume: ``(1, V, E, E, E, C)`` or ``(1, C, E, E, E, V)``."""
    v = module.grid.n_vertices
    shape = (1, v, edge, edge, edge, CHANNELS) if bench == "layers" else (1, UNET_IN_CHANNELS, edge, edge, edge, v)
    return torch.randn(shape, device=device, requires_grad=backward)


def _total(output: Tensor | tuple[Tensor, ...]) -> Tensor:
    return sum(t.sum() for t in output) if isinstance(output, tuple) else output.sum()


def _stepper(module: nn.Module, x: Tensor, backward: bool, fold: bool) -> Callable[[], None]:
    """One measured pass: forward (``inference_mode``, BatchNorm folded if ``fold``) or forward + backward."""
    if backward:
        module.train()

        def step() -> None:
            module.zero_grad(set_to_none=True)
            x.grad = None
            _total(module(x)).backward()

        return step
    module = fold_batchnorm(module) if fold else module.eval()

    def infer() -> None:
        with torch.inference_mode():
            module(x)

    return infer


def status_kib(field: str) -> float | None:
    """A ``VmRSS``/``VmHWM`` line of ``/proc/self/status`` in KiB, or None where there is none."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Child process: one (variant, nside, edge, pass) measurement."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    backward = args.child_pass == "fwdbwd"
    fold = args.bench == "unet" and args.child_variant == "e"

    def synchronise() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    # prime torch's lazy initialisation (thread pool, kernels of this path) on a small module of the same kind
    tiny_nside = 1 if args.bench == "layers" else args.child_nside
    tiny = build_module(args.bench, args.child_variant, tiny_nside).to(device)
    _stepper(tiny, make_input(args.bench, tiny, 1, device, backward), backward, fold)()
    del tiny
    gc.collect()
    before = torch.cuda.memory_allocated(device) if cuda else status_kib("VmRSS")
    start = time.perf_counter()
    module = build_module(args.bench, args.child_variant, args.child_nside).to(device)
    build_s = time.perf_counter() - start
    x = make_input(args.bench, module, args.child_edge, device, backward)
    step = _stepper(module, x, backward, fold)
    geometry_mib = sum(
        b.element_size() * (b._nnz() if b.is_sparse else b.numel())
        for b in module.buffers()
        if b.dtype == torch.float64
    )
    gc.collect()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        reset = True
    else:
        reset = reset_peak_rss()
    start = time.perf_counter()
    step()
    synchronise()
    warmup_s = time.perf_counter() - start
    repeats = min(args.repeats, int(args.budget // warmup_s)) if warmup_s > 0 else args.repeats
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        synchronise()
        times.append(time.perf_counter() - start)
    if cuda:
        peak_mib = (torch.cuda.max_memory_allocated(device) - before) / BYTES_PER_MIB
    elif before is not None and reset:
        peak_mib = (status_kib("VmHWM") - before) / KIB_PER_MIB
    else:
        peak_mib = None
    return {
        "times_s": times,
        "warmup_s": warmup_s,
        "build_s": build_s,
        "peak_mem_mb": peak_mib,
        "geometry_mb": geometry_mib / BYTES_PER_MIB,
        "n_vertices": module.grid.n_vertices,
        "torch_threads": torch.get_num_threads(),
    }


def measure(variant: str, nside: int, edge: int, pass_: str, args: argparse.Namespace) -> dict[str, Any]:
    """Spawn one child process and turn its output into a record (``median_s`` None if none ran)."""
    child_record = run_child(
        [
            "bench",
            args.bench,
            "--child-variant",
            variant,
            "--child-nside",
            str(nside),
            "--child-edge",
            str(edge),
            "--child-pass",
            pass_,
            "--repeats",
            str(args.repeats),
            "--threads",
            str(args.threads),
            "--device",
            args.device,
            "--budget",
            str(args.budget),
        ],
        args.threads,
    )
    label, hemisphere, method, spatial = VARIANTS[variant]
    median = statistics.median(child_record["times_s"]) if child_record["times_s"] else None
    logger.info(
        "%s %s nside %d edge %d %s: %s s, %s MiB",
        args.bench,
        variant,
        nside,
        edge,
        pass_,
        median,
        child_record["peak_mem_mb"],
    )
    voxels = edge**3
    return {
        "bench": "layer" if args.bench == "layers" else "unet",
        "variant": variant,
        "nside": nside,
        "edge": edge,
        "pass": pass_,
        "median_s": median,
        "peak_mem_mb": child_record["peak_mem_mb"],
        "voxels_per_s": voxels / median if median and args.bench == "unet" else None,
        "label": label,
        "method": method,
        "spatial": spatial,
        "hemisphere": hemisphere,
        **{k: child_record[k] for k in ("n_vertices", "times_s", "warmup_s", "build_s", "geometry_mb")},
    }


def add_ratios(records: list[dict[str, Any]]) -> None:
    """``time_ratio_to_a`` and ``mem_ratio_to_a``: each record over variant a's at the same nside, edge, pass."""
    reference = {(r["nside"], r["edge"], r["pass"]): r for r in records if r["variant"] == "a"}
    for record in records:
        ref = reference.get((record["nside"], record["edge"], record["pass"]))
        time_ok = ref is not None and record["median_s"] is not None and ref["median_s"]
        mem_ok = ref is not None and record["peak_mem_mb"] is not None and (ref["peak_mem_mb"] or 0) > 0
        record["time_ratio_to_a"] = record["median_s"] / ref["median_s"] if time_ok else None
        record["mem_ratio_to_a"] = record["peak_mem_mb"] / ref["peak_mem_mb"] if mem_ok else None


def fit_exponents(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Least-squares slopes of log time against log V (edge 8, V >= 24) and log voxels (nside 8).

    One entry per (variant, pass, axis) with at least two points: ``{"variant", "pass", "axis": "V" |
    "voxels", "exponent", "points"}``; time ~ V^exponent (or voxels^exponent) over the measured range.
    """
    fits = []
    axes = {
        "V": (lambda r: r["edge"] == EDGE and r["n_vertices"] >= MIN_FIT_VERTICES, lambda r: r["n_vertices"]),
        "voxels": (lambda r: r["nside"] == SCALING_NSIDE, lambda r: r["edge"] ** 3),
    }
    for variant in VARIANTS:
        for pass_ in PASSES:
            for axis, (keep, size) in axes.items():
                points = [
                    (size(r), r["median_s"])
                    for r in records
                    if r["variant"] == variant and r["pass"] == pass_ and r["median_s"] and keep(r)
                ]
                if len({p[0] for p in points}) >= 2:
                    slope = np.polyfit(np.log([p[0] for p in points]), np.log([p[1] for p in points]), 1)[0]
                    fits.append(
                        {
                            "variant": variant,
                            "pass": pass_,
                            "axis": axis,
                            "exponent": float(slope),
                            "points": len(points),
                        }
                    )
    return fits


def _ratio_chain(records: list[dict[str, Any]], nside: int, pass_: str) -> str:
    by_variant = {r["variant"]: r for r in records if r["nside"] == nside and r["edge"] == EDGE and r["pass"] == pass_}
    names = [v for v in VARIANTS if v in by_variant]
    steps = []
    for prev, cur in zip(names, names[1:]):
        t_prev, t_cur = by_variant[prev]["median_s"], by_variant[cur]["median_s"]
        steps.append(f"{prev}→{cur} ×{fmt(t_prev / t_cur if t_prev and t_cur else None, '.2f')}")
    return ", ".join(steps)


def render_markdown(result: dict[str, Any]) -> str:
    """The results page: header, table, ablation chain, growth exponents."""
    s = result["settings"]
    title = BENCHES[s["bench"]][0]
    mem_kind = "CUDA max_memory_allocated increase" if s["device"].startswith("cuda") else "peak RSS increase"
    module = (
        f"`SpatioSphericalConv({CHANNELS}, {CHANNELS}, cheb_order={CHEB_ORDER}, kernel_size=3)`, input "
        f"1 × V × E³ voxels × {CHANNELS} channels"
        if s["bench"] == "layers"
        else f"`SHDUNet({UNET_IN_CHANNELS}, 0, widths={tuple(s['widths'])}, kernel_sizes={tuple(s['kernel_sizes'])},"
        f" cheb_order={CHEB_ORDER})`, input 1 × {UNET_IN_CHANNELS} × E³ voxels × V"
    )
    lines = [
        *header_lines(f"Efficiency of {title} (SHD paper Fig. 4 ablation)", result),
        f"Module: {module}, float32, E = {EDGE} unless stated. Times are the median of up to {s['repeats']} runs "
        f"after one warm-up (fewer when the warm-up predicted more than {s['budget_s']:.0f} s; `–` when the "
        f"warm-up alone took longer); `fwd` runs under `torch.inference_mode`, `fwdbwd` is forward + backward. "
        f"Memory: {mem_kind} during the runs over the process before the module was built, MiB (includes the "
        "geometry buffers, not the graph construction). Ratios divide by variant a at the same nside, edge and pass.",
        "",
        "Variants: "
        + "; ".join(f"**{k}** {v[0]} (`method={v[2]!r}, spatial={v[3]!r}`)" for k, v in VARIANTS.items())
        + (
            ". The U-Net's variant e folds BatchNorm into the convolutions for `fwd`, as inference does."
            if s["bench"] == "unet"
            else "."
        ),
        "",
        "| variant | nside | V | E | pass | runs | median s | time / a | voxels/s | peak MiB | memory / a |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["records"]:
        lines.append(
            f"| {r['variant']} | {r['nside']} | {r['n_vertices']} | {r['edge']} | {r['pass']} | "
            f"{len(r['times_s'])} | {fmt(r['median_s'], '.4g')} | {fmt(r['time_ratio_to_a'], '.3g')} | "
            f"{fmt(r['voxels_per_s'], '.0f')} | {fmt(r['peak_mem_mb'], '.1f')} | "
            f"{fmt(r['mem_ratio_to_a'], '.3g')} |"
        )
    lines += ["", f"Ablation at E = {EDGE}, speed-up of each step (time before / time after):", ""]
    for nside in s["nsides"]:
        for pass_ in PASSES:
            lines.append(f"- nside {nside}, {pass_}: {_ratio_chain(result['records'], nside, pass_)}")
    if result["exponents"]:
        lines += [
            "",
            "Growth of the time (least-squares slope of log time; time ∝ size^exponent over the measured "
            f"range; V: nside with V ≥ {MIN_FIT_VERTICES} at E = {EDGE}; voxels: E³ at nside "
            f"{SCALING_NSIDE}):",
            "",
            "| variant | pass | with | exponent | points |",
            "|---|---|---|---:|---:|",
        ]
        lines += [
            f"| {f['variant']} | {f['pass']} | {f['axis']} | {f['exponent']:.2f} | {f['points']} |"
            for f in result["exponents"]
        ]
    lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Measure every (variant, nside, edge, pass) in its own process; write the JSON record and the page."""
    title, nsides, quick_nsides, extra_edges, _ = BENCHES[args.bench]
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.child_output is not None:
        Path(args.child_output).write_text(json.dumps(child(args)))
        return 0
    if args.nsides is None:
        args.nsides = list(quick_nsides if args.quick else nsides)
    if args.edges is None:
        args.edges = [] if args.quick else list(extra_edges)
    check_report_outputs(args)
    result = start_record(args)
    result["machine"]["gpu"] = (
        torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else None
    )
    cells = [(nside, EDGE) for nside in args.nsides]
    cells += [(SCALING_NSIDE, edge) for edge in args.edges if edge != EDGE and SCALING_NSIDE in args.nsides]
    records = [
        measure(variant, nside, edge, pass_, args)
        for nside, edge in cells
        for variant in args.variants
        for pass_ in PASSES
    ]
    add_ratios(records)
    unet = SHDUNet(UNET_IN_CHANNELS, 0)
    result.update(
        records=records,
        exponents=fit_exponents(records),
        settings={
            "bench": args.bench,
            "nsides": list(args.nsides),
            "edges": [EDGE, *args.edges],
            "variants": list(args.variants),
            "repeats": args.repeats,
            "budget_s": args.budget,
            "threads": args.threads,
            "device": args.device,
            "channels": CHANNELS,
            "cheb_order": CHEB_ORDER,
            "widths": list(unet.widths),
            "kernel_sizes": list(unet.kernel_sizes),
        },
    )
    write_report(args, result, render_markdown(result))
    return 0
