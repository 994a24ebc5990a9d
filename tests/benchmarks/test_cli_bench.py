"""Tests of ``equidmri bench cli``: a quick run, alone and against a baseline source tree."""

from pathlib import Path

import pytest
from bench_run import run_bench

import equidmri
from equidmri.bench.catalog import BENCHES
from equidmri.bench.cli import CASES, QUICK_CASES

SRC = Path(equidmri.__file__).resolve().parents[1]  # this checkout's src/


def test_quick_run_times_help_and_a_usage_error(tmp_path):
    result, markdown, _ = run_bench("cli", ["--quick"], tmp_path)
    assert [row["argv"] for row in result["rows"]] == [list(case) for case in QUICK_CASES]
    assert [row["current_exit_code"] for row in result["rows"]] == [0, 2]  # help; deconv without --dwi
    for row in result["rows"]:
        assert len(row["current_times_s"]) == 1 and 0 < row["current_median_s"] < 60
        assert "baseline_median_s" not in row
    assert "| `equidmri deconv` | 2 |" in markdown


def test_baseline_source_is_timed_alongside(tmp_path):
    result, markdown, _ = run_bench("cli", ["--quick", "--baseline-src", str(SRC)], tmp_path)
    for row in result["rows"]:
        assert row["baseline_exit_code"] == row["current_exit_code"]
        assert row["baseline_median_s"] > 0
    assert "| speed-up |" in markdown and "x |" in markdown


def test_a_baseline_without_the_package_is_refused(tmp_path):
    with pytest.raises(AssertionError, match="holds no equidmri package"):
        run_bench("cli", ["--quick", "--baseline-src", str(tmp_path)], tmp_path)
    assert not (tmp_path / "result.json").exists()


def test_cases_hold_each_benchmark_help_and_one_bad_argument():
    tails = [(argv[1], argv[2:]) for argv in CASES if argv[0] == "bench" and len(argv) > 2]
    assert sorted(name for name, tail in tails if tail == ("--help",)) == sorted(BENCHES)
    assert sorted(name for name, tail in tails if tail != ("--help",)) == sorted(BENCHES)
