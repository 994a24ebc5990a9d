"""``equidmri bench spherical-layers --quick``: one tiny run (an 8³ phantom, ReLU, one SNR) and what it wrote."""

import math

import pytest
from bench_run import run_bench

METHODS = {"noisy input", "SH projection (lmax 8)", "MP-PCA", "Patch2Self", "dense/relu/signal", "sh/relu/signal",
           "sh/relu/sh", "chebyshev/relu/signal", "chebyshev/relu/sh"}  # fmt: skip


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("spherical_layers_bench")
    result, markdown, _ = run_bench("spherical-layers", ["--quick", "--threads", "1"], out)
    return result, markdown, out


def test_every_method_is_scored_with_finite_errors_and_the_page_says_how(quick_run):
    result, markdown, out = quick_run
    assert f"Command: `{result['command']}`" in markdown and "CPU cores" in markdown
    assert {r["method"] for r in result["rows"]} == METHODS
    for row in result["rows"]:
        assert math.isfinite(row["signal_rmse"]) and row["signal_rmse"] > 0 and 0 <= row["fa_mae"] < 1
        assert row["n_wm"] > 0 and f"| {row['method']} |" in markdown
    assert (out / "results" / "spherical_layers.png").stat().st_size > 10_000


def test_mppca_denoises_and_rotation_errors_separate_the_activation_spaces(quick_run):
    result, _, _ = quick_run
    rmse = {r["method"]: r["signal_rmse"] for r in result["rows"]}
    assert rmse["MP-PCA"] < rmse["noisy input"]
    networks = {n["method"]: n for n in result["networks"]}
    assert networks["sh/relu/signal"]["rotation_error"] < networks["sh/relu/sh"]["rotation_error"]
    alone = {(r["activation"], r["space"]): r["rotation_error"] for r in result["activation_rotation"]}
    assert alone[("relu", "signal")] < 0.01 < alone[("relu", "sh")]  # measured 7e-4 and 0.74
    assert all(n["forward_us_per_voxel"] > 0 and n["train_step_us_per_voxel"] > 0 for n in networks.values())
