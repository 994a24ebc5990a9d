"""Time and peak memory of one E(3) x SO(3) layer along the ablation of the SHD paper's Fig. 4.

Usage::

    python benchmarks/layers.py [--quick] [--json PATH] [--markdown PATH] [--threads 2] [--device cpu]
                                [--nsides N ...] [--variants a ...] [--repeats R] [--budget SECONDS]

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
allocation before the layer was built. Writes a JSON record and a markdown page (default ``docs/results/``).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import logging
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from equidmri.nn.layers import SphereGrid, SpatioSphericalConv
import machine  # benchmarks/machine.py, beside this script

logger = logging.getLogger("layers")

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parent.parent
RESULTS = REPO / "docs" / "results"
NAME = "efficiency"
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
DEFAULT_THREADS = 2  # the project's reference machine has 2 cores
DEFAULT_BUDGET_S = 60.0  # per (variant, nside, pass): fewer repeats, or none, beyond this
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
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


def run_child(args: argparse.Namespace) -> int:
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


def measure(variant: str, nside: int, pass_: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Spawn one child process and turn its output into a record (``median_s`` None if none ran)."""
    output = workdir / f"{variant}_{nside}_{pass_}.json"
    command = [sys.executable, str(SCRIPT), "--child-variant", variant, "--child-nside", str(nside),
               "--child-pass", pass_, "--child-output", str(output), "--repeats", str(args.repeats),
               "--threads", str(args.threads), "--device", args.device, "--budget", str(args.budget)]
    env = {**os.environ, **{name: str(args.threads) for name in THREAD_ENV}}
    subprocess.run(command, env=env, check=True)
    child = json.loads(output.read_text())
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


def machine_info(threads: int, device: str) -> dict[str, Any]:
    """CPU model, cores, threads, device and library versions."""
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None
    return machine.machine_info(threads, device=device, gpu=gpu)


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _ratio_chain(records: list[dict[str, Any]], nside: int, pass_: str) -> str:
    by_variant = {r["variant"]: r for r in records if r["nside"] == nside and r["pass"] == pass_}
    names = [v for v in VARIANTS if v in by_variant]
    steps = []
    for prev, cur in zip(names, names[1:]):
        t_prev, t_cur = by_variant[prev]["median_s"], by_variant[cur]["median_s"]
        steps.append(f"{prev}→{cur} ×{_fmt(t_prev / t_cur if t_prev and t_cur else None, '.2f')}")
    return ", ".join(steps)


def render_markdown(result: dict[str, Any]) -> str:
    """The results page: command, machine, table and the ablation a→b→c→d→e."""
    m, s = result["machine"], result["settings"]
    load = result["load_average"]
    mem_kind = "CUDA max_memory_allocated increase" if s["device"].startswith("cuda") else "peak RSS increase"
    lines = [
        "# Efficiency of one E(3) × SO(3) layer (SHD paper Fig. 4 ablation)",
        "",
        f"Command: `{result['command']}` (repository root)  ",
        f"Date: {result['date']}  ",
        f"Machine: {m['cpu_model']}, {m['cores']} CPU cores, {m['threads']} threads, device `{m['device']}`; "
        f"load average (1/5/15 min) {' / '.join(f'{x:.2f}' for x in load['start'])} at the start, "
        f"{' / '.join(f'{x:.2f}' for x in load['end'])} at the end  ",
        f"Software: Python {m['python']}, torch {m['torch']}, equidmri {m['equidmri']} (git `{m['git_commit']}`)",
        "",
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
                     f"{_fmt(r['median_s'], '.4g')} | {_fmt(r['time_ratio_to_a'], '.3g')} | "
                     f"{_fmt(r['peak_mem_mb'], '.1f')} | {_fmt(r['mem_ratio_to_a'], '.3g')} | "
                     f"{r['geometry_mb']:.2f} |")
    lines += ["", "Ablation, speed-up of each step (time before / time after):", ""]
    for nside in s["nsides"]:
        for pass_ in PASSES:
            lines.append(f"- nside {nside}, {pass_}: {_ratio_chain(result['records'], nside, pass_)}")
    lines.append("")
    return "\n".join(lines)


def run_benchmark(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Measure every (variant, nside, pass) in its own process and assemble the record."""
    load_start = os.getloadavg()
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for nside in args.nsides:
            for variant in args.variants:
                for pass_ in PASSES:
                    records.append(measure(variant, nside, pass_, args, Path(tmp)))
    add_ratios(records)
    return {"machine": machine_info(args.threads, args.device), "records": records,
            "command": shlex.join(["python", "benchmarks/layers.py", *argv]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
            "settings": {"nsides": list(args.nsides), "variants": list(args.variants), "repeats": args.repeats,
                         "budget_s": args.budget, "threads": args.threads, "device": args.device,
                         "channels": CHANNELS, "voxels": list(VOXELS), "batch": BATCH, "cheb_order": CHEB_ORDER}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"nside up to 8 and {QUICK_REPEATS} repeats")
    parser.add_argument("--nsides", type=int, nargs="+", help=f"HEALPix resolutions (default {NSIDES})")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--repeats", type=int, help=f"timed runs after the warm-up (default {DEFAULT_REPEATS})")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                        help="seconds of timed runs per measurement at most (default %(default)s)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch/BLAS threads per process")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--json", type=Path, default=RESULTS / f"{NAME}.json", help="JSON output")
    parser.add_argument("--markdown", type=Path, default=RESULTS / f"{NAME}.md", help="markdown output")
    for name, kind in (("variant", str), ("nside", int), ("pass", str), ("output", str)):
        parser.add_argument(f"--child-{name}", type=kind, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.child_output is not None:
        return run_child(args)
    if args.nsides is None:
        args.nsides = QUICK_NSIDES if args.quick else NSIDES
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run_benchmark(args, argv)
    for path, text in ((args.json, json.dumps(result, indent=2)), (args.markdown, render_markdown(result))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + ("\n" if not text.endswith("\n") else ""))
    logger.info("wrote %s and %s", args.json, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
