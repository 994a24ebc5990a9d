"""The benchmark figures: grouped bars and the error scatter are drawn and written atomically."""

import numpy as np

from equidmri.viz.results import BarPanel, ScatterPoint, plot_bar_panels, plot_error_scatter


def test_bar_panels_write_a_png_that_depends_on_the_numbers(tmp_path):
    panel = BarPanel("layer", np.array([[1e-3, 1e-20], [0.5, 0.2]]), np.array([[1e-4, 0.0], [0.1, 0.1]]))
    paths = [
        plot_bar_panels(
            tmp_path / f"{i}.png",
            [panel, BarPanel("unet", panel.means * scale, panel.stds)],
            ["a", "b"],
            ["T", "R"],
            ylabel="error",
            log_floor=1e-16,
        )
        for i, scale in enumerate((1.0, 10.0))
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in paths)
    assert paths[0].read_bytes() != paths[1].read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.png", "1.png"]  # no temporary file left


def test_error_scatter_draws_every_column_with_its_zoom(tmp_path):
    points = [
        ScatterPoint("CSD", False, 10.0, None, 0.2, None),
        ScatterPoint("SHD", True, 12.0, 1.0, 0.1, 0.02),
        ScatterPoint("MLP", True, 40.0, 2.0, 0.6, 0.1),
    ]
    path = plot_error_scatter(
        tmp_path / "table.png",
        [("high", points), ("low", points[:2])],
        xlabel="angular error (°)",
        ylabel="FPR",
        zoom_factor=1.6,
    )
    assert path.stat().st_size > 10_000
