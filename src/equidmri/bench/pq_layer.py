"""The measurements of ``equidmri bench pq-layer``: time and peak memory of one p×q-space layer.

What it measures, the cases and the options: :mod:`equidmri.bench.options.pq_layer` (``--help``).
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

import torch
from torch import Tensor

from equidmri.bench.efficiency import BYTES_PER_MIB, KIB_PER_MIB, reset_peak_rss, status_kib
from equidmri.bench.options.pq_layer import (
    DEFAULT_CASES,
    DEFAULT_REPEATS,
    EDGE,
    LAYERS,
    N_Q,
    QUICK_CASES,
    QUICK_EDGE,
    QUICK_N_Q,
    QUICK_REPEATS,
    VARIANTS,
)
from equidmri.bench.report import check_report_outputs, fmt, header_lines, run_child, start_record, write_report
from equidmri.nn.layers.pq_pointwise import gated
from equidmri.nn.layers.pq_space import PQConv, macs_per_voxel, q_space_vectors
from equidmri.nn.models.pq_segmentation import DEFAULT_PQ_IRREPS

logger = logging.getLogger(__name__)

SHELLS = (1000.0, 2000.0, 3000.0)  # s/mm²: the q-samples are N_Q / 3 random directions on each
SEED = 0
PRIME_EDGE, PRIME_N_Q = 4, 12  # voxels and q-samples of the layer that primes torch before the measurement
FWDBWD_OVER_FWD = 3  # a forward + backward is budgeted as three forwards
FLOAT32_BYTES = 4


def bench_q_vectors(n_q: int) -> Tensor:
    """``(n_q, 3)`` q-vectors: ``n_q / 3`` seeded random directions on each of :data:`SHELLS`."""
    generator = torch.Generator().manual_seed(SEED)
    bvecs = torch.randn(n_q, 3, generator=generator, dtype=torch.float64)
    bvals = torch.tensor(SHELLS, dtype=torch.float64).repeat_interleave(-(-n_q // len(SHELLS)))[:n_q]
    return q_space_vectors(bvals, bvecs)


def build_layer(case: str, n_q: int) -> PQConv:
    """The layer of ``case`` (``LAYER:VARIANT``) with the network's default hidden irreps."""
    layer, variant = case.split(":")
    kernel, method = VARIANTS[variant]
    gate = gated(DEFAULT_PQ_IRREPS[0])
    irreps_in = "1x0e" if layer == "first" else gate.irreps_out
    return PQConv(irreps_in, gate.irreps_in, bench_q_vectors(n_q).float(), kernel=kernel, method=method)


def _stepper(layer: PQConv, x: Tensor, backward: bool) -> Callable[[], None]:
    if backward:

        def step() -> None:
            layer.zero_grad(set_to_none=True)
            x.grad = None
            layer(x).sum().backward()

        return step

    def infer() -> None:
        with torch.inference_mode():
            layer(x)

    return infer


def _timed_pass(layer: PQConv, x: Tensor, backward: bool, repeats: int, budget: float, before: float | None) -> dict:
    """One warm-up and up to ``repeats`` timed runs of a pass; its peak RSS over ``before`` (KiB), MiB."""
    step = _stepper(layer, x.requires_grad_(backward), backward)
    gc.collect()
    reset = reset_peak_rss()
    start = time.perf_counter()
    step()
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(min(repeats, int(budget // warmup_s)) if warmup_s > 0 else repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = (status_kib("VmHWM") - before) / KIB_PER_MIB if reset and before is not None else None
    return {"times_s": times, "warmup_s": warmup_s, "peak_mem_mb": peak}


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Child process: both passes of one case."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    # prime torch's lazy initialisation (threads, kernels of this path) on the same kind of layer at few q-samples
    # and voxels, so that its 6D kernel and intermediates are small: the CLI's allocator keeps freed memory
    prime = build_layer(args.child_case, PRIME_N_Q)
    x = torch.randn(1, PRIME_N_Q, PRIME_EDGE, PRIME_EDGE, PRIME_EDGE, prime.irreps_in.dim)
    _stepper(prime, x, False)()
    _stepper(prime, x.requires_grad_(True), True)()
    del prime, x
    gc.collect()
    before = status_kib("VmRSS")
    start = time.perf_counter()
    layer = build_layer(args.child_case, args.child_n_q)
    build_s = time.perf_counter() - start
    x = torch.randn(1, args.child_n_q, args.child_edge, args.child_edge, args.child_edge, layer.irreps_in.dim)
    passes = {"fwd": _timed_pass(layer, x, False, args.repeats, args.budget, before)}
    if passes["fwd"]["warmup_s"] * FWDBWD_OVER_FWD <= args.budget:
        passes["fwdbwd"] = _timed_pass(layer, x, True, args.repeats, args.budget, before)
    return {
        "passes": passes,
        "build_s": build_s,
        "method": layer.method,
        "irreps_in": str(layer.irreps_in),
        "irreps_out": str(layer.irreps_out),
        "weights": sum(p.numel() for p in layer.parameters()),
        "macs_per_voxel": {method: layer.macs_per_voxel(method) for method in _methods(layer)},
        "dense_kernel_mb": layer.kernel_size**3
        * layer.n_q**2
        * layer.irreps_in.dim
        * layer.irreps_out.dim
        * FLOAT32_BYTES
        / BYTES_PER_MIB,
        "torch_threads": torch.get_num_threads(),
    }


def _methods(layer: PQConv) -> tuple[str, ...]:
    return ("pwq", "pqw", "dense") if layer.kernel == "tp" else ("dense",)


def measure(case: str, edge: int, n_q: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run one case in a fresh process (with ``--quick`` in this one); one record per pass (``median_s`` None
    where none ran)."""
    argv = ["bench", "pq-layer", "--child-case", case, "--child-edge", str(edge), "--child-n-q", str(n_q)]
    argv += ["--repeats", str(args.repeats), "--threads", str(args.threads), "--budget", str(args.budget)]
    if args.quick:
        result = child(argparse.Namespace(**{**vars(args), "child_case": case, "child_edge": edge, "child_n_q": n_q}))
    else:
        result = run_child(argv, args.threads)
    layer, variant = case.split(":")
    macs = result["macs_per_voxel"][result["method"]] * edge**3
    records = []
    for pass_ in ("fwd", "fwdbwd"):
        measured = result["passes"].get(pass_, {"times_s": [], "warmup_s": None, "peak_mem_mb": None})
        median = statistics.median(measured["times_s"]) if measured["times_s"] else None
        logger.info("%s %s: %s s, %s MiB", case, pass_, median, measured["peak_mem_mb"])
        records.append(
            {
                "layer": layer,
                "variant": variant,
                "pass": pass_,
                "median_s": median,
                "gmac_forward": macs / 1e9,
                "gmac_per_s": macs / 1e9 / median if median and pass_ == "fwd" else None,
                **{
                    key: result[key]
                    for key in ("method", "irreps_in", "irreps_out", "weights", "build_s", "dense_kernel_mb")
                },
                **measured,
            }
        )
    return records


def render_markdown(record: dict[str, Any]) -> str:
    """The results page: one row per case and pass."""
    s = record["settings"]
    lines = [
        *header_lines("Time and memory of one p×q-space layer (Müller et al. 2021)", record),
        f"Input 1 × {s['n_q']} q-samples × {s['edge']}³ voxels × D_in, float32; 3x3x3 p-kernel, lmax_p 1, "
        f"lmax_q 2, 2 radial functions each. Layers of `PQSegmentationNet` (hidden irreps `{s['hidden']}`): "
        "**first** 1x0e -> hidden + gates, **hidden** hidden -> hidden + gates. Time: median of up to "
        f"{s['repeats']} runs after one warm-up (fewer beyond {s['budget_s']:.0f} s per pass; `fwdbwd` is skipped, "
        "`–`, when three forward warm-ups exceed that). Memory: peak RSS during a pass over the process before "
        "the layer was built, MiB. GMAC: multiply-adds of one forward, counted from the shapes "
        "(`PQConv.macs_per_voxel`); the dense 6D kernel's size is counted, float32, whether or not the case "
        "builds it.",
        "",
        "| layer | variant | D_in → D_out | weights | pass | runs | median s | GMAC | GMAC/s | peak MiB | "
        "dense kernel MiB |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in record["records"]:
        dims = f"{r['irreps_in']} → {r['irreps_out']}"
        lines.append(
            f"| {r['layer']} | {r['variant']} | {dims} | {r['weights']} | {r['pass']} | {len(r['times_s'])} | "
            f"{fmt(r['median_s'], '.3g')} | {r['gmac_forward']:.3g} | {fmt(r['gmac_per_s'], '.3g')} | "
            f"{fmt(r['peak_mem_mb'], '.4g')} | {r['dense_kernel_mb']:.4g} |"
        )
    lines += ["", "Multiply-adds of one forward by method, GMAC (counted):", ""]
    for layer, macs in record["macs_by_method"].items():
        lines.append(f"- {layer}: " + ", ".join(f"{m} {v / 1e9:.3g}" for m, v in macs.items()))
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Measure every case in its own process; write the JSON record and the page."""
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.child_output is not None:
        Path(args.child_output).write_text(json.dumps(child(args)))
        return 0
    check_report_outputs(args)
    if args.repeats < 1 or args.budget <= 0:
        raise ValueError(f"--repeats must be >= 1 and --budget > 0, got {args.repeats} and {args.budget}")
    if args.device != "cpu":
        raise ValueError(f"bench pq-layer measures CPU memory (peak RSS) only, got --device {args.device}")
    cases = args.cases or list(QUICK_CASES if args.quick else DEFAULT_CASES)
    edge, n_q = (QUICK_EDGE, QUICK_N_Q) if args.quick else (EDGE, N_Q)
    record = start_record(args)
    record["records"] = [row for case in cases for row in measure(case, edge, n_q, args)]
    gate = gated(DEFAULT_PQ_IRREPS[0])
    dims = {"first": (1, gate.irreps_in.dim), "hidden": (gate.irreps_out.dim, gate.irreps_in.dim)}
    record["macs_by_method"] = {  # the bench's layers: 3x3x3, lmax_p 1, lmax_q 2, 2 radial functions each
        layer: {m: macs_per_voxel(m, n_q, 3, *dims[layer], 1, 2, (2, 2, 2)) * edge**3 for m in ("pwq", "pqw", "dense")}
        for layer in LAYERS
    }
    record["settings"] = {
        "cases": cases,
        "edge": edge,
        "n_q": n_q,
        "shells": list(SHELLS),
        "hidden": DEFAULT_PQ_IRREPS[0],
        "repeats": args.repeats,
        "budget_s": args.budget,
        "threads": args.threads,
    }
    write_report(args, record, render_markdown(record))
    return 0
