"""Tests for equidmri.viz.qc: the PNG, its orientation and colours, and the segment geometry."""

from __future__ import annotations

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from equidmri.viz.qc import (
    DPI,
    PEAK_HALF_LENGTH,
    busiest_slice,
    peak_segments,
    plot_peaks_qc,
    qc_centre,
    qc_figure,
    views_mask,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 10_000  # sanity floor; measured 27.5 KB for the figure below (26.7 KB with no peak)
GREEN_COLUMN = 1  # x index of the vertical (+y) line
RED_ROW = 6  # y index of the horizontal (+x) line, from x = 3 to 7


@pytest.fixture
def volume():
    """Grey ramp background (8, 8, 3) and peaks (8, 8, 3, 2, 3) whose busiest slice is z = 1."""
    background = np.broadcast_to(np.linspace(0.0, 1.0, 8)[:, None, None], (8, 8, 3)).copy()
    peak_dirs = np.zeros((8, 8, 3, 2, 3))
    peak_dirs[GREEN_COLUMN, :, 1, 0] = [0.0, 1.0, 0.0]
    peak_dirs[3:, RED_ROW, 1, 0] = [-1.0, 0.0, 0.0]  # sign must not matter
    peak_dirs[5, 2, 0, 0] = [0.0, 0.0, 1.0]
    peak_dirs[5, 2, 2, 0] = [0.0, 0.0, 1.0]
    return background, peak_dirs


def coloured_pixels(image: np.ndarray, channel: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of pixels that are saturated in ``channel`` and dark in the other two."""
    rgb = image[..., :3]
    others = [c for c in range(3) if c != channel]
    selected = (rgb[..., channel] > 0.6) & np.all(rgb[..., others] < 0.3, axis=-1)
    return np.nonzero(selected)


def _panel_pixels(tmp_path, volume, panel: int) -> np.ndarray:
    """RGBA pixels inside the axes of one view (0 axial, 1 coronal, 2 sagittal) of the QC figure."""
    background, peak_dirs = volume
    centre = tuple(busiest_slice(peak_dirs, axis) for axis in (0, 1, 2))
    figure = qc_figure(background, peak_dirs, None, centre, title="peaks")
    figure.savefig(tmp_path / "figure.png", dpi=DPI)  # lays the figure out as plot_peaks_qc does
    box = figure.axes[panel].get_window_extent()
    image = matplotlib.image.imread(tmp_path / "figure.png")
    rows = image.shape[0]
    return image[int(rows - box.y1) + 2 : int(rows - box.y0) - 2, int(box.x0) + 2 : int(box.x1) - 2]


def test_png_has_three_views_a_colour_key_and_no_temporary_file(tmp_path, volume):
    path = plot_peaks_qc(tmp_path / "qc.png", *volume, title="peaks")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > MIN_PNG_BYTES
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    background, peak_dirs = volume
    figure = qc_figure(background, peak_dirs, None, (1, 6, 1))
    assert [axes.get_title() for axes in figure.axes[:3]] == ["axial, z = 1", "coronal, y = 6", "sagittal, x = 1"]
    key = figure.legends[0]
    assert [text.get_text() for text in key.get_texts()] == ["along x", "along y", "along z"]
    assert [tuple(line.get_color()) for line in key.legend_handles] == [
        (1.0, 0.0, 0.0),
        (0.0, 1.0, 0.0),
        (0.0, 0.0, 1.0),
    ]


def test_axial_view_shows_vertical_green_and_horizontal_red_lines_in_place(tmp_path, volume):
    image = _panel_pixels(tmp_path, volume, panel=0)
    green_rows, green_cols = coloured_pixels(image, channel=1)
    red_rows, red_cols = coloured_pixels(image, channel=0)
    assert green_rows.size > 50 and red_rows.size > 25
    # the +y line is vertical: tall and thin in the image
    assert np.ptp(green_cols) < 0.1 * np.ptp(green_rows)
    assert np.ptp(red_rows) < 0.1 * np.ptp(red_cols)
    # x to the right: the x = 1 line is left of the x = 3..7 line; y up: the y = 6 line is near the top
    assert green_cols.mean() < red_cols.min()
    assert red_rows.mean() < green_rows.mean() - 0.25 * np.ptp(green_rows)


def test_sagittal_view_shows_the_y_line_horizontal(tmp_path, volume):
    image = _panel_pixels(tmp_path, volume, panel=2)  # x = 1: the +y line, seen with y to the right
    green_rows, green_cols = coloured_pixels(image, channel=1)
    assert green_rows.size > 50
    assert np.ptp(green_rows) < 0.1 * np.ptp(green_cols)
    assert coloured_pixels(image, channel=0)[0].size == 0  # the red line lies at other x


def test_png_leaves_matplotlib_global_state_alone(tmp_path, volume):
    backend, rc_params = matplotlib.get_backend(), dict(matplotlib.rcParams)
    plot_peaks_qc(tmp_path / "qc.png", *volume)
    assert matplotlib.get_backend() == backend
    assert dict(matplotlib.rcParams) == rc_params


def test_existing_file_is_replaced(tmp_path, volume):
    path = tmp_path / "qc.png"
    path.write_bytes(b"old")
    plot_peaks_qc(path, *volume, slice_index=0)
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_busiest_slice_counts_peaks():
    peak_dirs = np.zeros((2, 2, 4, 3, 3))
    peak_dirs[0, 0, 2, :2] = [1.0, 0.0, 0.0]
    peak_dirs[1, 1, 3, 0] = [0.0, 1.0, 0.0]
    assert busiest_slice(peak_dirs) == 2
    assert busiest_slice(peak_dirs, axis=0) == 0 and busiest_slice(peak_dirs, axis=1) == 0
    assert busiest_slice(np.zeros((2, 2, 5, 1, 3))) == 2  # no peak: the middle slice


def test_qc_centre_and_the_voxels_the_views_show():
    peak_dirs = np.zeros((3, 4, 5, 2, 3))
    peak_dirs[2, 1, 3, 0] = [1.0, 0.0, 0.0]
    assert qc_centre(peak_dirs) == (2, 1, 3)
    assert qc_centre(peak_dirs, slice_index=0) == (2, 1, 0)
    shown = views_mask((3, 4, 5), (2, 1, 3))
    x, y, z = np.indices((3, 4, 5))
    np.testing.assert_array_equal(shown, (x == 2) | (y == 1) | (z == 3))


def test_peak_segments_geometry_and_dec_colours():
    peak_dirs = np.zeros((3, 2, 2, 3))
    peak_dirs[0, 1, 0] = [0.0, 2.0, 0.0]  # non-unit: normalised
    peak_dirs[2, 0, 0] = [0.6, -0.8, 0.0]
    peak_dirs[2, 0, 1] = [0.0, 0.0, -1.0]  # through-plane: a zero-length segment
    peak_values = np.zeros((3, 2, 2))
    peak_values[0, 1, 0], peak_values[2, 0, 0], peak_values[2, 0, 1] = 4.0, 2.0, 1.0
    segments, colours = peak_segments(peak_dirs, peak_values)
    h = PEAK_HALF_LENGTH
    expected_segments = [
        [[0.0, 1.0 - h], [0.0, 1.0 + h]],
        [[2.0 - 0.3 * h, 0.4 * h], [2.0 + 0.3 * h, -0.4 * h]],
        [[2.0, 0.0], [2.0, 0.0]],
    ]
    np.testing.assert_allclose(segments, expected_segments, atol=1e-12, rtol=0)
    np.testing.assert_allclose(colours, [[0.0, 1.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], atol=1e-12, rtol=0)
    unit_segments, _ = peak_segments(peak_dirs, None)
    np.testing.assert_allclose(np.linalg.norm(unit_segments[:2, 1] - unit_segments[:2, 0], axis=-1), 2 * h)
    coronal, _ = peak_segments(peak_dirs, None, in_plane=(0, 2))  # (x, z) components: the z peak is a full line
    np.testing.assert_allclose(coronal[2], [[2.0, h], [2.0, -h]], atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("suffix", ValueError, r"path must end in .png, got .*qc.jpg"),
        ("directory", FileNotFoundError, "the directory of path must exist"),
        ("background_list", TypeError, "background must be a numpy.ndarray, got list"),
        ("background_2d", ValueError, r"background must have shape \(X, Y, Z\), got \(8, 8\)"),
        ("dirs_shape", ValueError, r"peak_dirs must have shape \(8, 8, 3, 'P', 3\), got \(8, 8, 2, 2, 3\)"),
        ("dirs_nan", ValueError, "peak_dirs must be finite"),
        ("values_list", TypeError, "peak_values must be a numpy.ndarray or None, got list"),
        ("values_shape", ValueError, r"peak_values must have shape \(8, 8, 3, 2\), got \(8, 8, 3\)"),
        ("values_negative", ValueError, "peak_values must be finite and >= 0"),
        ("slice_float", TypeError, "slice_index must be an int or None, got float"),
        ("slice_range", ValueError, r"slice_index must be in \[0, 2\], got 3"),
    ],
)
def test_invalid_input_raises(tmp_path, volume, case, error, match):
    background, peak_dirs = volume
    kwargs = {"path": tmp_path / "qc.png", "background": background, "peak_dirs": peak_dirs}
    kwargs.update(
        {
            "suffix": {"path": tmp_path / "qc.jpg"},
            "directory": {"path": tmp_path / "missing" / "qc.png"},
            "background_list": {"background": background.tolist()},
            "background_2d": {"background": background[:, :, 0]},
            "dirs_shape": {"peak_dirs": peak_dirs[:, :, :2]},
            "dirs_nan": {"peak_dirs": np.where(peak_dirs == 1.0, np.nan, peak_dirs)},
            "values_list": {"peak_values": [0.0]},
            "values_shape": {"peak_values": np.ones((8, 8, 3))},
            "values_negative": {"peak_values": -np.ones((8, 8, 3, 2))},
            "slice_float": {"slice_index": 1.0},
            "slice_range": {"slice_index": 3},
        }[case]
    )
    with pytest.raises(error, match=match):
        plot_peaks_qc(**kwargs)
    assert not (tmp_path / "qc.png").exists()


def test_multi_tissue_figure_adds_the_axial_fraction_maps(tmp_path, volume):
    background, peak_dirs = volume
    fractions = np.zeros(background.shape + (3,))
    fractions[:4, ..., 0] = 1.0  # WM on the left half, CSF on the right
    fractions[4:, ..., 2] = 0.9
    figure = qc_figure(background, peak_dirs, None, (1, 6, 1), fractions=fractions, tissues=("wm", "gm", "csf"))
    assert [axes.get_title() for axes in figure.axes[3:6]] == [
        "WM fraction, z = 1",
        "GM fraction, z = 1",
        "CSF fraction, z = 1",
    ]
    for axes, tissue in zip(figure.axes[3:6], range(3)):
        np.testing.assert_array_equal(axes.get_images()[0].get_array(), fractions[:, :, 1, tissue].T)
    path = plot_peaks_qc(tmp_path / "qc.png", background, peak_dirs, fractions=fractions, tissues=("wm", "gm", "csf"))
    assert path.stat().st_size > MIN_PNG_BYTES
    with pytest.raises(ValueError, match=r"fractions must have shape \(8, 8, 3, 2\) \(one map per tissue\)"):
        plot_peaks_qc(tmp_path / "bad.png", background, peak_dirs, fractions=fractions, tissues=("wm", "gm"))


def test_single_tissue_fractions_add_no_row(volume):
    background, peak_dirs = volume
    figure = qc_figure(
        background, peak_dirs, None, (1, 6, 1), fractions=np.ones(background.shape + (1,)), tissues=("wm",)
    )
    assert [axes.get_title() for axes in figure.axes if axes.get_title()] == [
        "axial, z = 1",
        "coronal, y = 6",
        "sagittal, x = 1",
    ]
