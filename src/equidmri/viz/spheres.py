"""Functions on the sphere drawn as Mollweide maps: a grid of panels, one row per case, one column per variant.

Built like :mod:`equidmri.viz.results` (``matplotlib.figure.Figure``, Agg canvas, atomic PNG).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from equidmri.viz.qc import save_png

DPI = 120  # dots per inch
PANEL_SIZE = (3.4, 2.0)  # inches per panel
POINT_SIZE = 4.0  # marker area of one sample, points²
COLOURS = "RdBu_r"  # diverging: the maps are signed (zero-mean signals and their activations)

__all__ = ["plot_sphere_maps"]


def plot_sphere_maps(
    path: str | os.PathLike,
    vertices: np.ndarray,
    values: np.ndarray,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    *,
    title: str = "",
) -> Path:
    """Values ``(R, C, V)`` at unit ``vertices`` ``(V, 3)`` as an R × C grid of Mollweide maps (longitude
    atan2(y, x), latitude arcsin z; one symmetric colour scale per row), written to ``path``.

    Raises
    ------
    ValueError
        If the shapes disagree with the labels or the vertices.
    """
    values, vertices = np.asarray(values, dtype=float), np.asarray(vertices, dtype=float)
    rows, columns = len(row_labels), len(column_labels)
    if values.shape != (rows, columns, len(vertices)) or vertices.shape[1:] != (3,):
        raise ValueError(
            f"values must be ({rows}, {columns}, V) for vertices (V, 3), got {values.shape}, {vertices.shape}"
        )
    figure = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows + 0.4), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    longitude, latitude = np.arctan2(vertices[:, 1], vertices[:, 0]), np.arcsin(np.clip(vertices[:, 2], -1, 1))
    for r in range(rows):
        limit = float(np.abs(values[r]).max()) or 1.0
        for c in range(columns):
            ax = figure.add_subplot(rows, columns, r * columns + c + 1, projection="mollweide")
            points = ax.scatter(
                longitude, latitude, c=values[r, c], s=POINT_SIZE, cmap=COLOURS, vmin=-limit, vmax=limit, linewidths=0
            )
            ax.set_xticklabels([])
            ax.set_yticklabels([])
            ax.set_title(f"{row_labels[r]}: {column_labels[c]}", fontsize=8)
        figure.colorbar(points, ax=figure.axes[-columns:], shrink=0.8)
    if title:
        figure.suptitle(title, fontsize=10)
    return save_png(figure, Path(path), DPI)
