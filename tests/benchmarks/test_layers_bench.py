"""Tests of ``equidmri bench layers``: one tiny run (nside 1, variants a and e, one repeat)."""

import math

import pytest
from bench_run import run_bench

TINY = ["--quick", "--nsides", "1", "--variants", "a", "e", "--repeats", "1", "--threads", "2"]
RECORD_KEYS = {"bench", "variant", "nside", "pass", "median_s", "peak_mem_mb", "voxels_per_s"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    result = run_bench("layers", TINY, tmp_path_factory.mktemp("layers_bench"))
    return result[:2]


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_records_follow_the_schema_with_positive_times_and_memory(tiny_run):
    result, _ = tiny_run
    assert {"cpu_model", "cores", "threads", "device"} <= set(result["machine"])
    assert result["machine"]["threads"] == 2
    records = result["records"]
    assert [(r["variant"], r["nside"], r["pass"]) for r in records] == [
        ("a", 1, "fwd"), ("a", 1, "fwdbwd"), ("e", 1, "fwd"), ("e", 1, "fwdbwd")]
    for record in records:
        assert RECORD_KEYS <= set(record) and record["bench"] == "layer" and record["voxels_per_s"] is None
        assert isinstance(record["nside"], int)
        assert _positive(record["median_s"]) and _positive(record["peak_mem_mb"])
        assert len(record["times_s"]) == 1
        assert record["n_vertices"] == (6 if record["variant"] == "e" else 12)


@pytest.mark.slow
def test_ratios_divide_by_variant_a_at_the_same_nside_and_pass(tiny_run):
    result, _ = tiny_run
    by_key = {(r["variant"], r["pass"]): r for r in result["records"]}
    for pass_ in ("fwd", "fwdbwd"):
        a, e = by_key["a", pass_], by_key["e", pass_]
        assert a["time_ratio_to_a"] == 1.0 and a["mem_ratio_to_a"] == 1.0
        assert e["time_ratio_to_a"] == pytest.approx(e["median_s"] / a["median_s"])
        assert e["mem_ratio_to_a"] == pytest.approx(e["peak_mem_mb"] / a["peak_mem_mb"])


@pytest.mark.slow
def test_markdown_states_command_machine_table_and_ablation(tiny_run):
    result, markdown = tiny_run
    assert f"Command: `{result['command']}`" in markdown
    assert "CPU cores" in markdown and "load average" in markdown
    assert markdown.count("\n| a | 1 | 12 |") == 2 and markdown.count("\n| e | 1 | 6 |") == 2
    assert "- nside 1, fwd: a→e ×" in markdown
