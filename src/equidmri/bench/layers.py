"""Time and peak memory of one E(3) x SO(3) layer along the ablation of the SHD paper's Fig. 4.

``equidmri bench layers [--quick] [--nsides N ...] [--variants a ...] [--repeats R] [--budget SECONDS]``

One ``SpatioSphericalConv`` (16 -> 16 channels, cheb_order 5, 3x3x3 isotropic kernel), input
``(1, V, 8, 8, 8, 16)`` float32, at HEALPix nside 1, 2, 4, 8 and 16 (``--quick``: up to 8), in five variants
that change one thing at a time (Elaldi, Gerig & Dey, NeurIPS 2024, Fig. 4):

- ``a``: full sphere, sparse Laplacian, Chebyshev recursion per call (DeepSphere / RT-ESD);
- ``b``: full sphere, dense Laplacian, the same recursion;
- ``c``: full sphere, precomputed dense ``T_k`` stack (``method="chebyshev"``);
- ``d``: hemisphere V+, precomputed dense ``T_k`` of L+ (the SHD paper's layer);
- ``e``: hemisphere V+, spectral path (``method="spectral"``, the library default).

Each (variant, nside, pass) runs in a fresh Python process: build the layer, one warm-up, then ``--repeats``
timed runs (fewer if the warm-up says they would exceed ``--budget`` seconds; none if the warm-up alone
does). ``fwd`` is a forward under ``torch.no_grad``; ``fwdbwd`` a forward and a backward of the output sum.
Peak memory on CPU is the peak resident set size during the runs minus the resident set size before the
layer was built (after one pass through a tiny layer of the same kind, so that torch's lazy initialisation
is not counted; the peak counter is reset after construction, so graph-building temporaries are not
counted but the layer's geometry buffers are); on CUDA ``torch.cuda.max_memory_allocated`` minus the
allocation before the layer was built. Writes ``docs/results/efficiency_layers.{json,md}`` by default.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from equidmri.bench.report import (
    add_report_args, check_report_outputs, fmt, header_lines, run_child, start_record, write_report,
)
from equidmri.nn.layers import SphereGrid, SpatioSphericalConv

logger = logging.getLogger(__name__)

NAME = "efficiency_layers"
VARIANTS = {  # name -> (label, hemisphere, method)
    "a": ("full sphere, sparse recursion", False, "sparse-recursion"),
    "b": ("full sphere, dense recursion", False, "dense-recursion"),
    "c": ("full sphere, dense precomputed T_k", False, "chebyshev"),
    "d": ("hemisphere, dense precomputed T_k", True, "chebyshev"),
    "e": ("hemisphere, spectral (default)", True, "spectral"),
}
PASSES = ("fwd", "fwdbwd")
NSIDES = (1, 2, 4, 8, 16)
QUICK_NSIDES = (1, 2, 4, 8)
CHANNELS = 16  # in and out channels of the layer
VOXELS = (8, 8, 8)  # X, Y, Z of the input
BATCH = 1
CHEB_ORDER = 5  # SHD default
DEFAULT_REPEATS = 5  # timed runs after one warm-up
QUICK_REPEATS = 3
DEFAULT_BUDGET_S = 60.0  # per (variant, nside, pass): fewer repeats, or none, beyond this
KIB_PER_MIB = 1024
BYTES_PER_MIB = 1024**2


def _status_kib(field: str) -> float | None:
    """A ``VmRSS``/``VmHWM`` line of ``/proc/self/status`` in KiB, or None where there is none."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _step(layer: SpatioSphericalConv, x: Tensor, backward: bool) -> None:
    if backward:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()
    else:
        with torch.no_grad():
            layer(x)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def child(args: argparse.Namespace) -> int:
    """Child process: one (variant, nside, pass) measurement, written as JSON to ``--child-output``."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    _, hemisphere, method = VARIANTS[args.child_variant]
    grid = SphereGrid(args.child_nside, hemisphere)
    backward = args.child_pass == "fwdbwd"
    # prime torch's lazy initialisation (thread pool, kernels of this path) on a tiny layer of the same kind
    tiny = SpatioSphericalConv(2, 2, SphereGrid(1, hemisphere), cheb_order=CHEB_ORDER, method=method).to(device)
    _step(tiny, torch.randn(1, tiny.grid.n_vertices, 2, 2, 2, 2, device=device, requires_grad=backward), backward)
    del tiny
    x = torch.randn(BATCH, grid.n_vertices, *VOXELS, CHANNELS, device=device, requires_grad=backward)
    gc.collect()
    cuda = device.type == "cuda"
    before = torch.cuda.memory_allocated(device) if cuda else _status_kib("VmRSS")
    start = time.perf_counter()
    layer = SpatioSphericalConv(CHANNELS, CHANNELS, grid, cheb_order=CHEB_ORDER, method=method).to(device)
    build_s = time.perf_counter() - start
    geometry_mib = sum(b.element_size() * (b._nnz() if b.is_sparse else b.numel()) for b in layer.buffers())
    gc.collect()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        reset = True
    else:
        reset = _reset_peak_rss()
    start = time.perf_counter()
    _step(layer, x, backward)
    _synchronise(device)
    warmup_s = time.perf_counter() - start
    repeats = min(args.repeats, int(args.budget // warmup_s)) if warmup_s > 0 else args.repeats
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _step(layer, x, backward)
        _synchronise(device)
        times.append(time.perf_counter() - start)
    if cuda:
        peak_mib = (torch.cuda.max_memory_allocated(device) - before) / BYTES_PER_MIB
    elif before is not None and reset:
        peak_mib = (_status_kib("VmHWM") - before) / KIB_PER_MIB
    else:
        peak_mib = None
    record = {"times_s": times, "warmup_s": warmup_s, "build_s": build_s, "peak_mem_mb": peak_mib,
              "geometry_mb": geometry_mib / BYTES_PER_MIB, "n_vertices": grid.n_vertices,
              "torch_threads": torch.get_num_threads()}
    Path(args.child_output).write_text(json.dumps(record))
    return 0


def measure(variant: str, nside: int, pass_: str, args: argparse.Namespace) -> dict[str, Any]:
    """Spawn one child process and turn its output into a record (``median_s`` None if none ran)."""
    child = run_child(["bench", "layers", "--child-variant", variant, "--child-nside", str(nside),
                       "--child-pass", pass_, "--repeats", str(args.repeats), "--threads", str(args.threads),
                       "--device", args.device, "--budget", str(args.budget)], args.threads)
    label, hemisphere, method = VARIANTS[variant]
    median = statistics.median(child["times_s"]) if child["times_s"] else None
    logger.info("%s nside %d %s: %s s (warm-up %.3g s), %s MiB", variant, nside, pass_, median,
                child["warmup_s"], child["peak_mem_mb"])
    return {"bench": "layer", "variant": variant, "nside": nside, "pass": pass_, "median_s": median,
            "peak_mem_mb": child["peak_mem_mb"], "voxels_per_s": None, "label": label, "method": method,
            "hemisphere": hemisphere, "n_vertices": child["n_vertices"], "times_s": child["times_s"],
            "warmup_s": child["warmup_s"], "build_s": child["build_s"], "geometry_mb": child["geometry_mb"]}


def add_ratios(records: list[dict[str, Any]]) -> None:
    """``time_ratio_to_a`` and ``mem_ratio_to_a``: each record divided by variant a's at the same nside and pass."""
    reference = {(r["nside"], r["pass"]): r for r in records if r["variant"] == "a"}
    for record in records:
        ref = reference.get((record["nside"], record["pass"]))
        time_ok = ref is not None and record["median_s"] is not None and ref["median_s"]
        mem_ok = ref is not None and record["peak_mem_mb"] is not None and (ref["peak_mem_mb"] or 0) > 0
        record["time_ratio_to_a"] = record["median_s"] / ref["median_s"] if time_ok else None
        record["mem_ratio_to_a"] = record["peak_mem_mb"] / ref["peak_mem_mb"] if mem_ok else None


def _ratio_chain(records: list[dict[str, Any]], nside: int, pass_: str) -> str:
    by_variant = {r["variant"]: r for r in records if r["nside"] == nside and r["pass"] == pass_}
    names = [v for v in VARIANTS if v in by_variant]
    steps = []
    for prev, cur in zip(names, names[1:]):
        t_prev, t_cur = by_variant[prev]["median_s"], by_variant[cur]["median_s"]
        steps.append(f"{prev}→{cur} ×{fmt(t_prev / t_cur if t_prev and t_cur else None, '.2f')}")
    return ", ".join(steps)


def render_markdown(result: dict[str, Any]) -> str:
    """The results page: command, machine, table and the ablation a→b→c→d→e."""
    s = result["settings"]
    mem_kind = "CUDA max_memory_allocated increase" if s["device"].startswith("cuda") else "peak RSS increase"
    lines = [
        *header_lines("Efficiency of one E(3) × SO(3) layer (SHD paper Fig. 4 ablation)", result),
        f"Layer: `SpatioSphericalConv({CHANNELS}, {CHANNELS}, cheb_order={CHEB_ORDER}, kernel_size=3)`, input "
        f"{BATCH} × V × {'×'.join(map(str, VOXELS))} voxels × {CHANNELS} channels, float32. Times are the median "
        f"of up to {s['repeats']} runs after one warm-up (fewer when the warm-up predicted more than "
        f"{s['budget_s']:.0f} s; `–` when the warm-up alone took longer). Memory: {mem_kind} during the runs "
        "over the process before the layer was built, MiB (includes the geometry buffers, not the graph "
        "construction). Ratios divide by variant a at the same nside and pass.",
        "",
        "Variants: " + "; ".join(f"**{k}** {v[0]} (`method={v[2]!r}`)" for k, v in VARIANTS.items()) + ".",
        "",
        "| variant | nside | V | pass | runs | median s | time / a | peak MiB | memory / a | geometry MiB |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["records"]:
        lines.append(f"| {r['variant']} | {r['nside']} | {r['n_vertices']} | {r['pass']} | {len(r['times_s'])} | "
                     f"{fmt(r['median_s'], '.4g')} | {fmt(r['time_ratio_to_a'], '.3g')} | "
                     f"{fmt(r['peak_mem_mb'], '.1f')} | {fmt(r['mem_ratio_to_a'], '.3g')} | "
                     f"{r['geometry_mb']:.2f} |")
    lines += ["", "Ablation, speed-up of each step (time before / time after):", ""]
    for nside in s["nsides"]:
        for pass_ in PASSES:
            lines.append(f"- nside {nside}, {pass_}: {_ratio_chain(result['records'], nside, pass_)}")
    lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Measure every (variant, nside, pass) in its own process; write the JSON record and the page."""
    resolve_defaults(args)
    if args.child_output is not None:
        return child(args)
    check_report_outputs(args)
    result = start_record(args)
    gpu = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else None
    result["machine"]["gpu"] = gpu
    records = [measure(variant, nside, pass_, args)
               for nside in args.nsides for variant in args.variants for pass_ in PASSES]
    add_ratios(records)
    result["records"] = records
    result["settings"] = {"nsides": list(args.nsides), "variants": list(args.variants), "repeats": args.repeats,
                          "budget_s": args.budget, "threads": args.threads, "device": args.device,
                          "channels": CHANNELS, "voxels": list(VOXELS), "batch": BATCH, "cheb_order": CHEB_ORDER}
    write_report(args, result, render_markdown(result))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench layers``."""
    parser = subparsers.add_parser("layers", help="time and memory of one layer along the Fig. 4 ablation",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_report_args(parser, NAME, f"nside {' '.join(map(str, QUICK_NSIDES))} and {QUICK_REPEATS} repeats")
    parser.add_argument("--nsides", type=int, nargs="+", help=f"HEALPix resolutions (default {NSIDES})")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--repeats", type=int, help=f"timed runs after the warm-up (default {DEFAULT_REPEATS})")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                        help="seconds of timed runs per measurement at most (default %(default)s)")
    for name, kind in (("variant", str), ("nside", int), ("pass", str), ("output", str)):
        parser.add_argument(f"--child-{name}", type=kind, help=argparse.SUPPRESS)
    parser.set_defaults(run=run, prog=parser.prog)
    return parser


def resolve_defaults(args: argparse.Namespace) -> None:
    """``--repeats`` and ``--nsides`` follow ``--quick`` unless given."""
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.nsides is None:
        args.nsides = QUICK_NSIDES if args.quick else NSIDES
