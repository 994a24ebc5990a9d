"""Tests of ``equidmri bench layers`` and ``bench unet``: tiny runs (two variants, one repeat) and the fits."""

import math
import subprocess
import sys

import pytest
from bench_run import run_bench

from equidmri.bench.efficiency import fit_exponents

TINY = ["--quick", "--variants", "a", "e", "--repeats", "1", "--threads", "2"]
RECORD_KEYS = {"bench", "variant", "nside", "pass", "median_s", "peak_mem_mb", "voxels_per_s"}


@pytest.fixture(scope="module")
def layers_run(tmp_path_factory):
    return run_bench("layers", [*TINY, "--nsides", "1"], tmp_path_factory.mktemp("layers_bench"))[:2]


@pytest.fixture(scope="module")
def unet_run(tmp_path_factory):  # variant d beside e: the hemisphere, half the vertices of variants a-c
    options = ["--quick", "--variants", "d", "e", "--repeats", "1", "--threads", "2"]
    return run_bench("unet", options, tmp_path_factory.mktemp("unet_bench"))[:2]


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_layer_records_follow_the_schema_with_positive_times_and_memory(layers_run):
    result, _ = layers_run
    assert {"cpu_model", "cores", "threads", "device"} <= set(result["machine"])
    assert result["machine"]["threads"] == 2
    records = result["records"]
    assert [(r["variant"], r["nside"], r["pass"]) for r in records] == [
        ("a", 1, "fwd"),
        ("a", 1, "fwdbwd"),
        ("e", 1, "fwd"),
        ("e", 1, "fwdbwd"),
    ]
    for record in records:
        assert RECORD_KEYS <= set(record) and record["bench"] == "layer" and record["voxels_per_s"] is None
        assert isinstance(record["nside"], int) and record["edge"] == 8
        assert _positive(record["median_s"]) and _positive(record["peak_mem_mb"])
        assert len(record["times_s"]) == 1
        assert record["n_vertices"] == (6 if record["variant"] == "e" else 12)


@pytest.mark.slow
def test_ratios_divide_by_variant_a_at_the_same_nside_and_pass(layers_run):
    result, _ = layers_run
    by_key = {(r["variant"], r["pass"]): r for r in result["records"]}
    for pass_ in ("fwd", "fwdbwd"):
        a, e = by_key["a", pass_], by_key["e", pass_]
        assert a["time_ratio_to_a"] == 1.0 and a["mem_ratio_to_a"] == 1.0
        assert e["time_ratio_to_a"] == pytest.approx(e["median_s"] / a["median_s"])
        assert e["mem_ratio_to_a"] == pytest.approx(e["peak_mem_mb"] / a["peak_mem_mb"])


@pytest.mark.slow
def test_markdown_states_command_machine_table_and_ablation(layers_run):
    result, markdown = layers_run
    assert f"Command: `{result['command']}`" in markdown and result["command"].startswith("equidmri bench layers")
    assert "CPU cores" in markdown and "load average" in markdown
    assert markdown.count("\n| a | 1 | 12 | 8 |") == 2 and markdown.count("\n| e | 1 | 6 | 8 |") == 2
    assert "- nside 1, fwd: a→e ×" in markdown


@pytest.mark.slow
def test_unet_quick_run_measures_the_whole_network_at_nside_8(unet_run):
    result, markdown = unet_run
    records = result["records"]
    assert [(r["variant"], r["pass"]) for r in records] == [
        ("d", "fwd"),
        ("d", "fwdbwd"),
        ("e", "fwd"),
        ("e", "fwdbwd"),
    ]
    for record in records:
        assert record["bench"] == "unet" and record["nside"] == 8 and record["edge"] == 8
        assert record["n_vertices"] == 384  # the hemisphere of nside 8 (768 pixels)
        assert record["voxels_per_s"] == pytest.approx(8**3 / record["median_s"])
        assert _positive(record["peak_mem_mb"])
    assert "SHDUNet(1, 0, widths=(8, 16, 32, 64)" in markdown and "folds BatchNorm" in markdown


def test_exponents_are_the_slopes_of_log_time():
    records = [
        {
            "variant": "a",
            "pass": "fwd",
            "nside": n,
            "edge": 8,
            "n_vertices": 12 * n * n,
            "median_s": 1e-6 * (12 * n * n) ** 1.5,
        }
        for n in (1, 2, 4, 8)
    ]
    records += [
        {"variant": "a", "pass": "fwd", "nside": 8, "edge": e, "n_vertices": 768, "median_s": 1e-3 * e**3}
        for e in (4, 16)
    ]
    fits = {f["axis"]: f for f in fit_exponents(records)}
    assert fits["V"]["exponent"] == pytest.approx(1.5) and fits["V"]["points"] == 3  # nside 1 (V = 12) left out
    assert fits["voxels"]["exponent"] == pytest.approx(1.0, abs=0.05) and fits["voxels"]["points"] == 3


def test_existing_results_are_kept_without_force(tmp_path):
    existing = tmp_path / "efficiency_layers.json"
    existing.write_text("keep")
    done = subprocess.run(
        [sys.executable, "-m", "equidmri.cli.main", "bench", "layers", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "use --force" in done.stderr
    assert existing.read_text() == "keep" and not (tmp_path / "efficiency_layers.md").exists()
