"""Figures of the benchmark pages: grouped bar charts (equivariance errors, Dice) and an error scatter (Table 1).

Like :mod:`equidmri.viz.qc`, built on ``matplotlib.figure.Figure`` with an Agg canvas (no ``pyplot``) and
written atomically (:func:`equidmri.viz.qc.save_png`). The benchmarks compute the numbers; these functions
only draw them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from equidmri.viz.qc import save_png

DPI = 120  # dots per inch of the PNGs
BAR_SPAN = 0.8  # fraction of a group's width that its bars fill
SCATTER_COLOURS = "tab20"  # one colour per method, the same in every panel

__all__ = ["BarPanel", "ScatterPoint", "plot_bar_panels", "plot_error_scatter"]


@dataclass(frozen=True)
class BarPanel:
    """One panel of grouped bars: ``means`` and ``stds`` of shape ``(S, G)`` (series × groups) and a title."""

    title: str
    means: np.ndarray
    stds: np.ndarray


@dataclass(frozen=True)
class ScatterPoint:
    """A method's mean (x, y) with 95% half-widths (None: no interval); squares for learned methods."""

    label: str
    learned: bool
    x: float
    x_ci: float | None
    y: float
    y_ci: float | None


def _figure(width: float, height: float, rows: int, columns: int, **kwargs) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False, **kwargs)
    return figure, axes


def plot_bar_panels(
    path: str | os.PathLike,
    panels: Sequence[BarPanel],
    series: Sequence[str],
    groups: Sequence[str],
    *,
    ylabel: str,
    log_floor: float | None = None,
    ylim: tuple[float, float] | None = None,
    panel_size: tuple[float, float] = (6.0, 4.2),
    sharey: bool = True,
) -> Path:
    """Mean ± sd bars, one bar per series in each group, one panel per :class:`BarPanel`, written to ``path``.

    Parameters
    ----------
    log_floor : float, optional
        Log y axis; means below the floor (exact results) are drawn at it and error bars stop at it.
    ylim : (float, float), optional
        Linear y limits.
    sharey : bool
        One y axis for all panels (False: each panel its own, e.g. panels of different quantities).
    """
    figure, axes = _figure(panel_size[0] * len(panels), panel_size[1], 1, len(panels), sharey=sharey)
    width = BAR_SPAN / len(series)
    for ax, panel in zip(axes[0], panels):
        for j, label in enumerate(series):
            means, stds = np.asarray(panel.means[j], dtype=float), np.asarray(panel.stds[j], dtype=float)
            lower = stds
            if log_floor is not None:
                means = np.maximum(means, log_floor)
                lower = np.minimum(stds, means - log_floor)  # keep error bars above the floor on the log axis
            positions = np.arange(len(groups)) + (j - (len(series) - 1) / 2) * width
            ax.bar(positions, means, width, yerr=[lower, stds], label=label, capsize=2)
        if log_floor is not None:
            ax.set_yscale("log")
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_xticks(range(len(groups)), list(groups))
        ax.set_title(panel.title)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel(ylabel)
    axes[0, -1].legend(fontsize=8, loc="upper left")
    return save_png(figure, Path(path), DPI)


def plot_error_scatter(
    path: str | os.PathLike,
    columns: Sequence[tuple[str, Sequence[ScatterPoint]]],
    *,
    xlabel: str,
    ylabel: str,
    zoom_factor: float,
) -> Path:
    """One column per ``(title, points)``: every point on top, below the same axes zoomed on the points whose
    x is at most ``zoom_factor`` times the smallest (SHD paper Fig. 6 A/B), written to ``path``."""
    figure, axes = _figure(5.0 * len(columns), 8.0, 2, len(columns))
    colours = colormaps[SCATTER_COLOURS]
    labels = list(dict.fromkeys(point.label for _, points in columns for point in points))
    for column, (title, points) in enumerate(columns):
        for ax in axes[:, column]:
            for point in points:
                ax.errorbar(
                    point.x,
                    point.y,
                    xerr=point.x_ci,
                    yerr=point.y_ci,
                    capsize=3,
                    color=colours(labels.index(point.label) % colours.N),
                    fmt="s" if point.learned else "o",
                    label=point.label,
                )
            ax.set(xlabel=xlabel, ylabel=ylabel)
            ax.grid(alpha=0.3)
        axes[0, column].set_title(title)
        if points:
            best = min(point.x for point in points)
            limit = zoom_factor * best
            top = max(point.y + (point.y_ci or 0.0) for point in points if point.x <= limit)
            axes[1, column].set(
                xlim=(0.75 * best, limit),
                ylim=(-0.02, 1.1 * top + 0.02),
                title=f"{title}: zoom on {xlabel} ≤ {limit:.1f}",
            )
    axes[0, 0].legend(fontsize=7)
    return save_png(figure, Path(path), DPI)
