"""The measurements of ``equidmri bench equivariance``: the equivariance error of one layer and of the U-Net of
each operator family (SHD paper App. A.2, Fig. 8).

What it measures, the operators and the options: :mod:`equidmri.bench.options.equivariance`
(``equidmri bench equivariance --help``).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from equidmri.bench.options.equivariance import (
    DEFAULTS,
    NSIDE,
    QUICK,
    QUICK_NSIDE,
    QUICK_SIZE,
    QUICK_UNET_WIDTHS,
    SIZE,
    UNET_WIDTHS,
)
from equidmri.bench.report import (
    header_lines,
    start_figure_report,
    write_report,
)
from equidmri.eval.equivariance import LMAX_IN, LMAX_OUT, SH_BASIS, TRANSFORMS, draw_sample, equivariance_errors
from equidmri.nn.layers import NeighboursAsChannels, SHSpatialConv, SpatioSphericalConv, SphereGrid
from equidmri.nn.models import build_model
from equidmri.sphere.graph import N_NEIGHBOURS, SIGMA_SCALE, chebyshev_polynomials, hemisphere_laplacian
from equidmri.viz.results import BarPanel, plot_bar_panels

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Operator:
    """One operator family: its ``label``, the registered U-Net ``unet`` of its family, whether it runs on the
    hemisphere, and ``layer(c_in, c_out, grid) -> nn.Module``, one layer of ``nn.layers`` on ``(B, V, X, Y, Z, C)``."""

    label: str
    unet: str
    hemisphere: bool
    layer: Callable[[int, int, SphereGrid], nn.Module]


def _spatio_spherical(kernel_size: int) -> Callable[[int, int, SphereGrid], nn.Module]:
    return lambda c_in, c_out, grid: SpatioSphericalConv(
        c_in, c_out, grid, cheb_order=CHEB_ORDER, kernel_size=kernel_size
    )


def _concat(c_in: int, c_out: int, grid: SphereGrid) -> nn.Module:
    conv = SpatioSphericalConv(27 * c_in, c_out, grid, cheb_order=CHEB_ORDER, kernel_size=1)
    return nn.Sequential(NeighboursAsChannels(), conv)


def _sh(c_in: int, c_out: int, grid: SphereGrid) -> nn.Module:
    return SHSpatialConv(c_in, c_out, grid.vertices, LMAX_IN, SH_BASIS).double()


CHEB_ORDER = 5
OPERATORS = {  # the table of operator families (the one place their names map to layers and U-Nets)
    "shd": Operator("E(3)×SO(3) hemisphere (SHD)", "shd", True, _spatio_spherical(3)),
    "rt-esd": Operator("E(3)×SO(3) full sphere (RT-ESD)", "rt-esd", False, _spatio_spherical(3)),
    "e3-sh": Operator("E(3)-SH (CNN on SH)", "cnn", True, _sh),
    "concat-so3": Operator("Concat-SO(3) (Concat-ESD)", "concat-esd", True, _concat),
    "so3": Operator("voxel-wise SO(3) (ESD)", "esd", True, _spatio_spherical(1)),
}
LEVELS = ("layer", "unet")
FIGURE_TRANSFORMS = ("grid", "voxel", "both")
LAYER_CHANNELS = (2, 4)  # in, out of the single layers
UNET_IN_CHANNELS = 2
SIGMA_SCALES = (0.4, 0.6, 0.8, 1.0, 1.2, 1.6, 2.4)  # sigma = scale / nside (the library's: SIGMA_SCALE)
NEIGHBOUR_COUNTS = (8, 12, 16)  # k of the k-NN graph (the library's: N_NEIGHBOURS)
QUICK_SWEEP = ((SIGMA_SCALE, 1.2), (N_NEIGHBOURS,))  # --quick: scales, neighbour counts
SWEEP_SIZE = 4  # voxels per edge of a sweep sample
PLOT_FLOOR = 1e-16  # smallest error drawn on the log axis
LEVEL_LABELS = {"layer": "single layer", "unet": "U-Net"}


def _vertex_major(module: nn.Module) -> callable:
    """Operator ``(B, C, X, Y, Z, V) -> (B, X, Y, Z, C', V)`` of a layer on ``(B, V, X, Y, Z, C)`` maps."""
    return lambda x: module(x.permute(0, 5, 2, 3, 4, 1)).permute(0, 2, 3, 4, 5, 1)


def build_layer(operator: str, nside: int) -> tuple[callable, np.ndarray]:
    """One layer of ``operator`` with random weights (call after seeding): ``(operator, vertices)``."""
    grid = SphereGrid(nside, OPERATORS[operator].hemisphere)
    layer = OPERATORS[operator].layer(*LAYER_CHANNELS, grid)
    return _vertex_major(layer.double().eval()), grid.vertices


def build_unet(operator: str, nside: int, widths: tuple[int, ...]) -> tuple[callable, np.ndarray]:
    """The registered U-Net of ``operator`` (call after seeding), its head re-drawn with He's initialisation.

    The library's heads start near a constant fODF (small weights, fixed bias); a constant output would
    hide every error, so the head gets the He initialisation of the other layers and a zero bias.
    """
    kernel_sizes = (3,) + (1,) * (len(widths) - 1)
    net = build_model(
        OPERATORS[operator].unet,
        in_channels=UNET_IN_CHANNELS,
        nside=nside,
        widths=widths,
        kernel_sizes=kernel_sizes,
        cheb_order=CHEB_ORDER,
    )
    with torch.no_grad():
        weight = net.head.weight
        weight.copy_(torch.randn_like(weight) * math.sqrt(2.0 * weight.shape[-1] / weight.numel()))
        net.head.bias.zero_()
    net = net.double().eval()
    return (lambda x: net(x)[0][..., None, :]), net.grid.vertices


def measure(operator: str, level: str, samples: int, args: argparse.Namespace) -> dict[str, list[float]]:
    """Errors per transform over ``samples`` samples (seeds ``args.seed + i``, shared by every operator)."""
    errors: dict[str, list[float]] = {}
    widths = QUICK_UNET_WIDTHS if args.quick else UNET_WIDTHS
    channels = LAYER_CHANNELS[0] if level == "layer" else UNET_IN_CHANNELS
    for i in range(samples):
        torch.manual_seed(args.seed + i)  # same weights for shd and rt-esd
        built = build_layer(operator, args.nside) if level == "layer" else build_unet(operator, args.nside, widths)
        sample = draw_sample(np.random.default_rng(args.seed + i), channels, args.size)
        for transform, value in equivariance_errors(*built, sample).items():
            errors.setdefault(transform, []).append(value)
    return errors


def spherical_filter(eigvals: np.ndarray, eigvecs: np.ndarray) -> callable:
    """A random Chebyshev filter of a Laplacian given by its eigenpairs, as an operator (the spherical part
    of a ``kernel_size=1`` layer; the sweep builds L+ itself, with any neighbour count)."""
    response = torch.from_numpy(chebyshev_polynomials(np.clip(eigvals, -1.0, 1.0), CHEB_ORDER))  # (K, V)
    eigvecs = torch.from_numpy(eigvecs)
    c_in, c_out = LAYER_CHANNELS
    weight = torch.randn(CHEB_ORDER, c_in, c_out, dtype=torch.float64) * math.sqrt(2.0 / (c_in * CHEB_ORDER))
    filters = torch.einsum("kv,kio->vio", response, weight)  # spectral response per vertex, (V, C_in, C_out)

    def apply(x: Tensor) -> Tensor:  # (B, C, X, Y, Z, V) -> (B, X, Y, Z, C', V)
        spectrum = eigvecs.T @ x.movedim(1, -1)  # (B, X, Y, Z, V, C): U^T x
        mixed = torch.einsum("...vi,vio->...vo", spectrum, filters)
        return (eigvecs @ mixed).transpose(-1, -2)  # U y

    return apply


def sweep(
    nside: int,
    samples: int,
    seed: int,
    scales: tuple[float, ...] = SIGMA_SCALES,
    counts: tuple[int, ...] = NEIGHBOUR_COUNTS,
) -> list[dict[str, Any]]:
    """Voxel-rotation error of random spherical filters per (sigma scale, neighbour count), ``4^3`` voxels."""
    records = []
    vertices = SphereGrid(nside).vertices
    for n_neighbours in counts:
        for scale in scales:
            eigvals, eigvecs = np.linalg.eigh(hemisphere_laplacian(nside, scale / nside, n_neighbours))
            errors = []
            for i in range(samples):
                torch.manual_seed(seed + i)
                sample = draw_sample(np.random.default_rng(seed + i), LAYER_CHANNELS[0], SWEEP_SIZE)
                errors.append(equivariance_errors(spherical_filter(eigvals, eigvecs), vertices, sample)["voxel"])
            records.append(
                {
                    "sigma_scale": scale,
                    "sigma": scale / nside,
                    "n_neighbours": n_neighbours,
                    "error_mean": float(np.mean(errors)),
                    "error_std": float(np.std(errors)),
                    "n": samples,
                }
            )
            logger.info("sweep sigma %.2f/nside, k %d: %.3g", scale, n_neighbours, records[-1]["error_mean"])
    return records


def summarise(errors: dict[str, list[float]], operator: str, level: str) -> list[dict[str, Any]]:
    """One record per transform: ``{"operator", "level", "transform", "error_mean", "error_std", "n"}``."""
    return [
        {
            "operator": operator,
            "level": level,
            "transform": transform,
            "error_mean": float(np.mean(values)),
            "error_std": float(np.std(values)),
            "n": len(values),
        }
        for transform, values in errors.items()
    ]


def best_setting(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The sweep record of the smallest mean error."""
    return min(records, key=lambda r: r["error_mean"])


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """Fig. 8 of the SHD paper: mean error per operator and transform (log scale), one panel per level.

    Errors below ``PLOT_FLOOR`` (exact to float64) are drawn at the floor.
    """
    panels = []
    for level in LEVELS:
        cells = {(r["operator"], r["transform"]): r for r in records if r["level"] == level}
        means = np.array([[cells[o, t]["error_mean"] for t in FIGURE_TRANSFORMS] for o in OPERATORS])
        stds = np.array([[cells[o, t]["error_std"] for t in FIGURE_TRANSFORMS] for o in OPERATORS])
        n = cells[next(iter(OPERATORS)), FIGURE_TRANSFORMS[0]]["n"]
        panels.append(BarPanel(f"{LEVEL_LABELS[level]}, mean ± sd over {n} samples", means, stds))
    plot_bar_panels(
        path,
        panels,
        [op.label for op in OPERATORS.values()],
        ["grid rotation T", "voxel rotation R", "both (T, R)"],
        ylabel="relative squared error (SHD eq. 13)",
        log_floor=PLOT_FLOOR,
    )


def render_markdown(result: dict[str, Any], figure: Path) -> str:
    """The results page: settings, the error table, the SHD = RT-ESD check, the sweep and the figure."""
    s = result["settings"]
    records = result["records"]
    lines = [
        *header_lines("Equivariance error (SHD paper eq. 13, App. A.2, Fig. 8)", result),
        f"Inputs: {s['size']}³ voxels × V at HEALPix nside {s['nside']} (V+ = {6 * s['nside'] ** 2} on the "
        f"hemisphere, V = {12 * s['nside'] ** 2} on the full sphere), U[0, 1] samples projected on even SH degrees "
        f"≤ {LMAX_IN}; random He initialisation, BatchNorm with its initial statistics (eval mode), float64. "
        "Every sample draws new weights, a new input and "
        f"new rotations (seeds {s['seed']}…); single layers: {s['samples']} samples, U-Nets: {s['unet_samples']} "
        f"samples (the paper uses 1000; this is what fits the CPU budget). Layers: {LAYER_CHANNELS[0]} → "
        f"{LAYER_CHANNELS[1]} channels, cheb_order {CHEB_ORDER}; U-Nets: registry models with widths "
        f"{tuple(s['unet_widths'])}, kernel sizes 3 at level 0, 1 below, {UNET_IN_CHANNELS} input channels, the "
        "head re-drawn with He's initialisation (the library's near-constant initial head would hide errors).",
        "",
        "Transforms: **grid** = one of the 23 non-identity cube rotations of the voxel grid (exact permutation); "
        "**voxel** = a uniform random rotation R of every voxel's sphere, inputs rotated through their SH "
        f"coefficients, outputs compared through their least-squares SH projection of degree ≤ {LMAX_OUT}; "
        "**both** = T and R together; **grid-trilinear** (reported apart) = a uniform random rotation of the "
        "voxel grid with trilinear resampling, compared within 2.5 voxels of the centre (interpolation error "
        "and border padding included: an upper bound, not an equivariance property).",
        "",
        "| operator | level | grid | voxel | both | grid-trilinear | n |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for level in LEVELS:
        for operator in OPERATORS:
            cells = {r["transform"]: r for r in records if r["operator"] == operator and r["level"] == level}
            values = " | ".join(f"{cells[t]['error_mean']:.3g} ± {cells[t]['error_std']:.2g}" for t in TRANSFORMS)
            lines.append(f"| {OPERATORS[operator].label} | {level} | {values} | {cells['grid']['n']} |")
    check = result["shd_vs_rt_esd"]
    scales = sorted({r["sigma_scale"] for r in result["sweep"]})
    lines += [
        "",
        "Values: mean ± sd of ||G N(f) − N(G f)||² / ||N(f)||² over the samples.",
        "",
        f"SHD vs RT-ESD with the same weights on the same samples: largest absolute difference of the mean errors "
        f"{check['max_abs_difference']:.3g} (target ≤ 1e-6: "
        f"{'met' if check['max_abs_difference'] <= 1e-6 else 'missed'}).",
        f"E(3)×SO(3) layer targets (< 1e-2 at nside {s['nside']}): voxel {result['targets']['layer_voxel']:.3g}, "
        f"grid {result['targets']['layer_grid']:.3g} — {'met' if result['targets']['met'] else 'missed'}.",
        "",
        "## Graph kernel width and neighbour count",
        "",
        f"Voxel-rotation error of a random spherical filter (cheb_order {CHEB_ORDER}, {LAYER_CHANNELS[0]} → "
        f"{LAYER_CHANNELS[1]} channels, L+ at nside {s['nside']}, {SWEEP_SIZE}³ voxels, {s['sweep_samples']} samples "
        "per cell, the same samples in every cell) for Gaussian weights 2^-(d/σ)², σ = scale / nside, and k "
        "nearest neighbours (plus ties):",
        "",
        "| k \\ scale | " + " | ".join(f"{x:g}" for x in scales) + " |",
        "|---|" + "---:|" * len(scales),
    ]
    for k in sorted({r["n_neighbours"] for r in result["sweep"]}):
        row = {r["sigma_scale"]: r for r in result["sweep"] if r["n_neighbours"] == k}
        lines.append(f"| {k} | " + " | ".join(f"{row[x]['error_mean']:.3g}" for x in scales) + " |")
    best = result["sweep_best"]
    lines += [
        "",
        f"Smallest error: scale {best['sigma_scale']:g}, k = {best['n_neighbours']} ({best['error_mean']:.3g}); "
        f"the library's default at this run: scale {s['default_sigma_scale']:g}, k = {s['default_n_neighbours']} "
        f"({result['sweep_default']['error_mean']:.3g}).",
        "",
        f"![Equivariance errors]({figure.name})",
        "",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Measure every (operator, level), the sweep, and write the JSON record, the page and the figure."""
    args.nside, args.size = (QUICK_NSIDE, QUICK_SIZE) if args.quick else (NSIDE, SIZE)
    figure, result = start_figure_report(args, QUICK if args.quick else DEFAULTS)
    start = time.perf_counter()
    records = []
    for level in LEVELS:
        samples = args.samples if level == "layer" else args.unet_samples
        for operator in OPERATORS:
            records += summarise(measure(operator, level, samples, args), operator, level)
            logger.info("%s %s done after %.0f s", operator, level, time.perf_counter() - start)
    sweep_records = sweep(args.nside, args.sweep_samples, args.seed, *(QUICK_SWEEP if args.quick else ()))
    default = next(r for r in sweep_records if r["sigma_scale"] == SIGMA_SCALE and r["n_neighbours"] == N_NEIGHBOURS)
    cell = {(r["operator"], r["level"], r["transform"]): r["error_mean"] for r in records}
    differences = [abs(cell["shd", level, t] - cell["rt-esd", level, t]) for level in LEVELS for t in TRANSFORMS]
    layer_voxel, layer_grid = cell["shd", "layer", "voxel"], cell["shd", "layer", "grid"]
    result.update(
        {
            "records": records,
            "shd_vs_rt_esd": {"max_abs_difference": max(differences)},
            "targets": {
                "layer_voxel": layer_voxel,
                "layer_grid": layer_grid,
                "met": layer_voxel < 1e-2 and layer_grid < 1e-2 and max(differences) <= 1e-6,
            },
            "sweep": sweep_records,
            "sweep_best": best_setting(sweep_records),
            "sweep_default": default,
            "settings": {
                "nside": args.nside,
                "size": args.size,
                "samples": args.samples,
                "unet_samples": args.unet_samples,
                "sweep_samples": args.sweep_samples,
                "seed": args.seed,
                "lmax_in": LMAX_IN,
                "lmax_out": LMAX_OUT,
                "unet_widths": list(QUICK_UNET_WIDTHS if args.quick else UNET_WIDTHS),
                "default_sigma_scale": SIGMA_SCALE,
                "default_n_neighbours": N_NEIGHBOURS,
            },
            "elapsed_s": time.perf_counter() - start,
        }
    )
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot(records, figure)
    write_report(args, result, render_markdown(result, figure))
    return 0
