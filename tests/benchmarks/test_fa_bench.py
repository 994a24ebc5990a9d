"""Tests of ``equidmri bench fa``: one --quick run of both experiments."""

import math
from pathlib import Path

import pytest
from bench_run import run_bench

BINS = {"0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0", "all"}
KEYS = {"experiment", "model", "train", "test", "fa_bin", "rmse", "n"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fa_bench")
    result, markdown, _ = run_bench("fa", ["--quick", "--threads", "1"], out)
    return result, markdown, out


@pytest.mark.slow
def test_records_follow_the_issue_schema(quick_run):
    result, _, _ = quick_run
    records = result["records"]
    assert all(KEYS <= set(r) for r in records)
    assert {r["experiment"] for r in records} == {"scheme", "orientation"}
    assert {r["model"] for r in records} == {"fit", "fcn", "scnn", "scnn-10pct"}
    assert {r["fa_bin"] for r in records} == BINS
    by_setting = {}
    for r in records:
        by_setting.setdefault((r["experiment"], r["model"], r["train"], r["test"]), {})[r["fa_bin"]] = r
    for bins in by_setting.values():
        assert set(bins) == BINS
        assert sum(bins[b]["n"] for b in BINS - {"all"}) == bins["all"]["n"] > 0
        assert math.isfinite(bins["all"]["rmse"]) and bins["all"]["rmse"] > 0
    assert ("scheme", "fcn", "sim-skare", "small_64D-jones") in by_setting
    assert ("orientation", "scnn-10pct", "sim-skare-ap-10pct", "sim-skare") in by_setting


@pytest.mark.slow
def test_paired_t_tests_and_invariance_are_reported(quick_run):
    result, _, _ = quick_run
    tests = [t for t in result["ttests"] if t["model"] == "fcn" and t["fa_range"] == "0.4-1.0"]
    assert {t["a"] for t in tests} == {"sim-jones", "small_64D-jones"}
    assert all(0.0 <= t["p"] <= 1.0 and t["n"] > 1 for t in tests)
    invariance = result["invariance"]
    assert invariance["scnn (sim-skare)"]["max_abs"] < invariance["fcn (sim-skare)"]["max_abs"]
    assert all(cell["max_abs"] < 1e-3 for name, cell in invariance.items() if name.startswith("scnn"))  # trained


@pytest.mark.slow
def test_markdown_states_command_data_and_figures(quick_run):
    result, markdown, out = quick_run
    assert f"Command: `{result['command']}`" in markdown and "CPU cores" in markdown
    assert "**Training**" in markdown and "**Test `small_64D`**" in markdown
    figures = [line.split("(")[1].rstrip(")") for line in markdown.splitlines() if line.startswith("![")]
    assert len(figures) == 5
    assert all((Path(out) / "results" / name).stat().st_size > 10_000 for name in figures)
