"""Figures of the FA experiments (``equidmri bench fa``): error boxplots, FA/error maps, sphere error maps; the
map-and-error panels serve ``equidmri bench harmonize`` too (:func:`plot_maps_with_errors`).

Like :mod:`equidmri.viz.qc`, built on ``matplotlib.figure.Figure`` with an Agg canvas (no ``pyplot``).
Every figure carries a footer line (the command and machine that produced it) and is written atomically
(:func:`equidmri.viz.qc.save_png`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from equidmri.viz.qc import save_png

DPI = 120  # dots per inch of the PNGs
FOOTER_SIZE = 6  # points
PANEL_INCHES = 2.4  # width and height of one map panel
ERROR_MAX = 0.3  # FA; upper end of the colour scale of absolute error maps
OUTSIDE_COLOUR = "lightsteelblue"  # background of map panels, seen where the mask excludes a voxel (NaN)


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | os.PathLike, footer: str) -> Path:
    path = Path(path)
    figure.get_layout_engine().set(h_pad=0.25)
    figure.supxlabel(footer, fontsize=FOOTER_SIZE, ha="left", x=0.01)
    return save_png(figure, path, DPI)


def plot_error_boxplots(
    path: str | os.PathLike,
    errors: Mapping[str, tuple[np.ndarray, np.ndarray]],
    bin_edges: Sequence[float],
    footer: str,
    title: str,
) -> Path:
    """Boxplots of absolute FA errors per ground-truth FA bin, one box per (bin, label).

    ``errors[label] = (fa (M,), error (M,))``: ground-truth FA and predicted minus true FA, dimensionless.
    """
    labels = list(errors)
    n_bins = len(bin_edges) - 1
    figure = _new_figure(max(6.0, 0.35 * n_bins * len(labels)), 3.6)
    axes = figure.add_subplot()
    colours = [f"C{i}" for i in range(len(labels))]
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        fa, error = errors[label]
        index = np.clip(np.digitize(fa, bin_edges[1:-1]), 0, n_bins - 1)
        data = [np.abs(error[index == b]) for b in range(n_bins)]
        positions = np.arange(n_bins) + (i - (len(labels) - 1) / 2) * width
        boxes = axes.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True, showfliers=False)
        for box in boxes["boxes"]:
            box.set_facecolor(colours[i])
        axes.plot([], [], color=colours[i], linewidth=6, label=label)
    axes.set_xticks(np.arange(n_bins), [f"{a:.1f}-{b:.1f}" for a, b in zip(bin_edges, bin_edges[1:])])
    axes.set_xlabel("ground-truth FA bin")
    axes.set_ylabel("|FA error|")
    axes.set_title(title)
    axes.legend(fontsize=7, ncols=2)
    return _save(figure, path, footer)


def plot_fa_maps(
    path: str | os.PathLike, reference: np.ndarray, maps: Mapping[str, np.ndarray], footer: str, title: str
) -> Path:
    """FA maps (top row) and absolute error maps against ``reference`` (bottom row) of one slice ``(X, Y)``.

    NaN marks voxels outside the mask. Axes are voxel axes (x right, y up).
    """
    return plot_maps_with_errors(path, reference, maps, footer, title)


def plot_maps_with_errors(
    path: str | os.PathLike,
    reference: np.ndarray,
    maps: Mapping[str, np.ndarray],
    footer: str,
    title: str,
    *,
    reference_label: str = "reference FA (64 directions)",
    quantity: str = "FA",
    value_range: tuple[float, float] = (0.0, 1.0),
    error_max: float = ERROR_MAX,
) -> Path:
    """Maps of one slice ``(X, Y)`` (top row, the reference first) and their absolute errors against ``reference``
    (bottom row), on shared colour scales: ``value_range`` for the maps, ``[0, error_max]`` for the errors.

    NaN marks voxels outside the mask. Axes are voxel axes (x right, y up).
    """
    labels = list(maps)
    figure = _new_figure(PANEL_INCHES * (len(labels) + 1), 2 * PANEL_INCHES + 0.6)
    grid = figure.subplots(2, len(labels) + 1, squeeze=False)
    panels = [(reference_label, reference, None)] + [(label, maps[label], reference) for label in labels]
    low, high = value_range
    for column, (label, values, ref) in enumerate(panels):
        image = grid[0, column].imshow(
            values.T, origin="lower", cmap="gray", vmin=low, vmax=high, interpolation="nearest"
        )
        grid[0, column].set_title(label, fontsize=8)
        if ref is not None:
            error = grid[1, column].imshow(
                np.abs(values - ref).T, origin="lower", cmap="hot", vmin=0, vmax=error_max, interpolation="nearest"
            )
            grid[1, column].set_title("|error|", fontsize=8)
        else:
            grid[1, column].axis("off")
    figure.colorbar(image, ax=grid[0, :], label=quantity, shrink=0.8)
    figure.colorbar(error, ax=grid[1, :], label=f"|{quantity} error|", shrink=0.8)
    for axes in grid.flat:
        axes.set_facecolor(OUTSIDE_COLOUR)
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle(f"{title}; {OUTSIDE_COLOUR}: outside the mask", fontsize=9)
    return _save(figure, path, footer)


def plot_sphere_errors(
    path: str | os.PathLike, directions: np.ndarray, maps: Mapping[str, np.ndarray], footer: str, title: str
) -> Path:
    """Mean absolute error per principal direction, one panel per label, on the hemisphere (lon/lat plot).

    ``directions`` ``(V, 3)`` are unit pixel centres with z >= 0; ``maps[label]`` ``(V,)`` the mean error of
    the voxels whose principal eigenvector falls in each pixel (NaN where none does).
    """
    labels = list(maps)
    longitude = np.degrees(np.arctan2(directions[:, 1], directions[:, 0]))
    latitude = np.degrees(np.arcsin(np.clip(directions[:, 2], -1.0, 1.0)))
    vmax = max(float(np.nanmax(values)) for values in maps.values())
    figure = _new_figure(6.4, 1.9 * len(labels) + 0.8)
    grid = figure.subplots(len(labels), 1, squeeze=False)[:, 0]
    for axes, label in zip(grid, labels):
        points = axes.scatter(longitude, latitude, c=maps[label], cmap="viridis", vmin=0, vmax=vmax, s=40)
        axes.set_title(label, fontsize=8)
        axes.set_xlabel("azimuth (°, from x towards y = AP)", fontsize=7)
        axes.set_ylabel("elevation (°, z = SI)", fontsize=7)
        axes.set_xlim(-180, 180)
        axes.set_ylim(0, 90)
        axes.set_aspect("equal")
    figure.colorbar(points, ax=list(grid), label="mean |FA error|", shrink=0.9)
    figure.suptitle(title, fontsize=9)
    return _save(figure, path, footer)
