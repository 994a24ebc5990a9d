"""Quality-control figure: fODF peaks drawn over three orthogonal slices of a scalar map, with a colour key.

Built on ``matplotlib.figure.Figure`` with an Agg canvas, never ``pyplot``: nothing global
(backend, open-figure registry, rcParams) changes for the caller.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

logger = logging.getLogger(__name__)

PEAK_HALF_LENGTH = 0.45  # voxels; a full-length peak spans 0.9 voxel, so neighbouring lines do not touch
PEAK_LINE_WIDTH = 1.5  # points
PANEL_WIDTH = 4.0  # inches per view
FIGURE_HEIGHT_RANGE = (3.5, 9.0)  # inches; the height follows the tallest view's aspect ratio within this range
LEGEND_HEIGHT = 0.6  # inches below the views for the colour key
# the three views: (name, axis held fixed, in-plane axes (horizontal, vertical)), voxel axes x=0, y=1, z=2
VIEWS = (("axial", 2, (0, 1)), ("coronal", 1, (0, 2)), ("sagittal", 0, (1, 2)))
AXIS_NAMES = "xyz"
COLOUR_KEY = (((1.0, 0.0, 0.0), "x"), ((0.0, 1.0, 0.0), "y"), ((0.0, 0.0, 1.0), "z"))  # RGB = (|x|, |y|, |z|)
DPI = 150  # dots per inch of the PNG
BACKGROUND_CMAP = "gray"
FRACTION_CMAP = "magma"  # perceptually uniform, dark = 0
FRACTION_MAX = 1.2  # top of the tissue-fraction colour scale (fractions are relative to the WM b=0 response)
TMP_PREFIX = ".tmp-"  # name prefix of the temporary file behind the atomic write (as in dmri/io.py)


def _check_inputs(
    path: Path,
    background: np.ndarray,
    peak_dirs: np.ndarray,
    peak_values: np.ndarray | None,
    slice_index: int | None,
) -> None:
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {path}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the directory of path must exist, got {path.parent}")
    for name, array in (("background", background), ("peak_dirs", peak_dirs)):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(array).__name__}")
    if background.ndim != 3:
        raise ValueError(f"background must have shape (X, Y, Z), got {background.shape}")
    if peak_dirs.ndim != 5 or peak_dirs.shape[-1] != 3 or peak_dirs.shape[:3] != background.shape:
        raise ValueError(f"peak_dirs must have shape {background.shape + ('P', 3)}, got {peak_dirs.shape}")
    if not np.all(np.isfinite(peak_dirs)):
        raise ValueError("peak_dirs must be finite (zeros mark missing peaks), got NaN or infinite values")
    if peak_values is not None:
        if not isinstance(peak_values, np.ndarray):
            raise TypeError(f"peak_values must be a numpy.ndarray or None, got {type(peak_values).__name__}")
        if peak_values.shape != peak_dirs.shape[:4]:
            raise ValueError(f"peak_values must have shape {peak_dirs.shape[:4]}, got {peak_values.shape}")
        if not np.all(np.isfinite(peak_values)) or np.any(peak_values < 0):
            raise ValueError("peak_values must be finite and >= 0")
    if slice_index is not None:
        if isinstance(slice_index, bool) or not isinstance(slice_index, (int, np.integer)):
            raise TypeError(f"slice_index must be an int or None, got {type(slice_index).__name__}")
        if not 0 <= slice_index < background.shape[2]:
            raise ValueError(f"slice_index must be in [0, {background.shape[2] - 1}], got {slice_index}")


def busiest_slice(peak_dirs: np.ndarray, axis: int = 2) -> int:
    """Index along ``axis`` (2: axial z) of the slice with the most peaks, ``(X, Y, Z, P, 3)`` input; the
    middle slice if there is no peak."""
    others = tuple(a for a in (0, 1, 2, 3) if a != axis)
    counts = np.any(peak_dirs != 0, axis=-1).sum(axis=others)
    return int(np.argmax(counts)) if counts.any() else peak_dirs.shape[axis] // 2


def qc_centre(peak_dirs: np.ndarray, slice_index: int | None = None) -> tuple[int, int, int]:
    """The voxel ``(x, y, z)`` the QC figure's three views pass through: the busiest slice along each axis
    (:func:`busiest_slice`), ``z`` = ``slice_index`` when given."""
    x, y, z = (busiest_slice(peak_dirs, axis) for axis in (0, 1, 2))
    return x, y, z if slice_index is None else int(slice_index)


def views_mask(shape: tuple[int, int, int], centre: tuple[int, int, int]) -> np.ndarray:
    """``(X, Y, Z)`` bool: the voxels of the three views through ``centre`` (the only ones of the background the
    figure shows, so a costly background such as DTI FA need only be computed there)."""
    shown = np.zeros(shape, dtype=bool)
    shown[centre[0]], shown[:, centre[1]], shown[:, :, centre[2]] = True, True, True
    return shown


def peak_segments(
    peak_dirs: np.ndarray, peak_values: np.ndarray | None, in_plane: tuple[int, int] = (0, 1)
) -> tuple[np.ndarray, np.ndarray]:
    """Line segments and DEC colours of the peaks of one slice.

    Parameters
    ----------
    peak_dirs : ndarray, shape ``(A, B, P, 3)``
        Peak directions in the voxel-axis frame over the slice's two voxel axes, zeros where there is no peak.
    peak_values : ndarray, shape ``(A, B, P)``, optional
        Peak amplitudes; lengths are scaled by the value relative to the slice maximum.
        Default: every peak has full length.
    in_plane : (int, int)
        The direction components along the slice's axes A and B: ``(0, 1)`` for an axial slice (x, y),
        ``(0, 2)`` coronal (x, z), ``(1, 2)`` sagittal (y, z).

    Returns
    -------
    segments : ndarray, shape ``(L, 2, 2)`` float64
        End points ``(a, b)`` in voxel coordinates: the in-plane projection of each peak, centred on
        its voxel, ``2 * PEAK_HALF_LENGTH`` voxels long at full length.
    colours : ndarray, shape ``(L, 3)`` float64
        RGB = (|x|, |y|, |z|) of the unit direction (directionally encoded colour, as in dipy/MRtrix).
    """
    norms = np.linalg.norm(peak_dirs, axis=-1)
    present = norms > 0
    x_index, y_index, _ = np.nonzero(present)
    units = peak_dirs[present] / norms[present][:, None]  # (L, 3)
    if peak_values is None:
        scale = np.ones(len(units))
    else:
        largest = peak_values[present].max(initial=0.0)
        scale = peak_values[present] / largest if largest > 0 else np.zeros(len(units))
    centres = np.stack([x_index, y_index], axis=-1).astype(np.float64)
    half = (PEAK_HALF_LENGTH * scale)[:, None] * units[:, list(in_plane)]
    return np.stack([centres - half, centres + half], axis=1), np.abs(units)


def save_png(figure: Figure, path: Path, dpi: int) -> Path:
    """Write ``figure`` to ``path`` atomically (temporary file in the same directory, then ``os.replace``)."""
    tmp = path.parent / f"{TMP_PREFIX}{path.name}"
    try:
        figure.savefig(tmp, format="png", dpi=dpi)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        figure.clear()
    return path


def _fraction_row(figure: Figure, panels: np.ndarray, fractions: np.ndarray, tissues: tuple[str, ...], z: int) -> None:
    """One axial panel per tissue fraction map at slice ``z``, with a shared colour bar."""
    for axes, tissue, values in zip(panels, tissues, np.moveaxis(fractions[:, :, z], -1, 0)):
        image = axes.imshow(
            values.T, origin="lower", cmap=FRACTION_CMAP, interpolation="nearest", vmin=0.0, vmax=FRACTION_MAX
        )
        axes.set_title(f"{tissue.upper()} fraction, z = {z}")
        axes.set_xlabel("x (voxel)")
        axes.set_ylabel("y (voxel)")
    figure.colorbar(image, ax=list(panels), label="tissue fraction (WM b=0 units)", shrink=0.8)


def qc_figure(
    background: np.ndarray,
    peak_dirs: np.ndarray,
    peak_values: np.ndarray | None,
    centre: tuple[int, int, int],
    *,
    title: str = "",
    background_label: str = "FA",
    fractions: np.ndarray | None = None,
    tissues: tuple[str, ...] = (),
) -> Figure:
    """The QC figure: axial, coronal and sagittal slices through ``centre`` with their peaks, a colour bar
    of the background and a key of the direction colours; with several tissues, a second row of their axial
    fraction maps (inputs as :func:`plot_peaks_qc`, checked there)."""
    shape = background.shape
    aspect = max(shape[vertical] / shape[horizontal] for _, _, (horizontal, vertical) in VIEWS)
    row_height = float(np.clip(PANEL_WIDTH * aspect, *FIGURE_HEIGHT_RANGE))
    rows = 2 if len(tissues) > 1 else 1
    figure = Figure(
        figsize=(PANEL_WIDTH * len(VIEWS), rows * row_height + LEGEND_HEIGHT), dpi=DPI, layout="constrained"
    )
    FigureCanvasAgg(figure)
    grid = figure.subplots(rows, len(VIEWS), squeeze=False)
    panels = grid[0]
    if rows == 2:
        _fraction_row(figure, grid[1], fractions, tissues, centre[2])
    low, high = float(background.min()), float(background.max())
    for axes, (name, fixed, in_plane) in zip(panels, VIEWS):
        index = [slice(None)] * 3
        index[fixed] = centre[fixed]
        image = axes.imshow(
            background[tuple(index)].T,
            origin="lower",
            cmap=BACKGROUND_CMAP,
            interpolation="nearest",
            vmin=low,
            vmax=high,
        )
        values = None if peak_values is None else peak_values[tuple(index)]
        segments, colours = peak_segments(peak_dirs[tuple(index)], values, in_plane)
        axes.add_collection(LineCollection(segments, colors=colours, linewidths=PEAK_LINE_WIDTH), autolim=False)
        axes.set_xlabel(f"{AXIS_NAMES[in_plane[0]]} (voxel)")
        axes.set_ylabel(f"{AXIS_NAMES[in_plane[1]]} (voxel)")
        axes.set_title(f"{name}, {AXIS_NAMES[fixed]} = {centre[fixed]}")
    figure.colorbar(image, ax=list(panels), label=background_label, shrink=0.8)
    key = [Line2D([], [], color=rgb, linewidth=3 * PEAK_LINE_WIDTH, label=f"along {axis}") for rgb, axis in COLOUR_KEY]
    figure.legend(
        handles=key,
        loc="outside lower center",
        ncols=len(key),
        frameon=False,
        title="peak colour = (|x|, |y|, |z|) of its direction, voxel axes; oblique peaks mix the colours",
    )
    if title:
        figure.suptitle(title)
    return figure


def plot_peaks_qc(
    path: str | os.PathLike,
    background: np.ndarray,
    peak_dirs: np.ndarray,
    peak_values: np.ndarray | None = None,
    *,
    slice_index: int | None = None,
    title: str = "",
    background_label: str = "FA",
    fractions: np.ndarray | None = None,
    tissues: tuple[str, ...] = (),
) -> Path:
    """Save a PNG of peak lines over an axial, a coronal and a sagittal slice of a scalar map.

    With ``fractions`` of several tissues (a multi-shell run: WM, GM, CSF), a second row shows each tissue's
    fraction map on the axial slice of the peaks, so a reader sees at once whether WM is high where the peaks
    are and CSF in the ventricles.

    Each slice is shown in grey (one grey scale for the three) with voxel axes increasing to the right
    and up (axial: x, y; coronal: x, z; sagittal: y, z), with a colour bar. Each peak is a line through
    its voxel centre along the in-plane projection of its direction, coloured (|x|, |y|, |z|), and a key
    below the views names the colours. Each view shows the slice with the most peaks along its axis.

    Parameters
    ----------
    path : str or PathLike
        Output ``.png`` file; its directory must exist. Written atomically (temporary file in the
        same directory, then ``os.replace``); an existing file is replaced.
    background : ndarray, shape ``(X, Y, Z)``
        Scalar map behind the peaks (e.g. FA, dimensionless); only its voxels on the three views are drawn
        (:func:`views_mask` of :func:`qc_centre`).
    peak_dirs : ndarray, shape ``(X, Y, Z, P, 3)``
        Peak directions in the voxel-axis frame, zeros where there is no peak.
    peak_values : ndarray, shape ``(X, Y, Z, P)``, optional
        Peak amplitudes (>= 0); line length is proportional to value / the slice's maximum. Default:
        every line has the full length of 0.9 voxel.
    slice_index : int, optional
        Axial slice z. Default: the slice with the most peaks (the middle slice if there are none).
    title : str
        Figure title.
    background_label : str
        Label of the colour bar.
    fractions : ndarray, shape ``(X, Y, Z, T)``, optional
        Tissue fractions (dimensionless, relative to the WM b=0 response); drawn only when ``T > 1``.
    tissues : tuple of str
        Their names, length T (e.g. ``("wm", "gm", "csf")``).

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    TypeError
        If an array argument is not a NumPy array or ``slice_index`` is not an int.
    ValueError
        If ``path`` does not end in ``.png``, the shapes disagree, peaks are not finite, peak
        values are negative, ``slice_index`` is out of range, or ``fractions`` is not ``(X, Y, Z, T)`` with
        ``T == len(tissues)``.
    FileNotFoundError
        If the directory of ``path`` does not exist.
    """
    path = Path(path)
    _check_inputs(path, background, peak_dirs, peak_values, slice_index)
    if fractions is not None and (np.shape(fractions) != background.shape + (len(tissues),)):
        raise ValueError(
            f"fractions must have shape {background.shape + (len(tissues),)} (one map per tissue), "
            f"got {np.shape(fractions)}"
        )
    centre = qc_centre(peak_dirs, slice_index)
    figure = qc_figure(
        background,
        peak_dirs,
        peak_values,
        centre,
        title=title,
        background_label=background_label,
        fractions=fractions,
        tissues=tuple(tissues) if fractions is not None else (),
    )
    save_png(figure, path, DPI)
    logger.info("wrote %s (views through voxel %s)", path, centre)
    return path
