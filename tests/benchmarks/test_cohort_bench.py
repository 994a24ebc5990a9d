"""Tests of ``equidmri bench cohort``: a quick run from an empty folder (tiny cohort, 1 and 2 processes, memory)."""

import pytest
from bench_run import run_bench


@pytest.mark.slow
def test_quick_run_times_one_and_two_processes_and_records_memory(tmp_path):
    result, markdown, stdout = run_bench("cohort", ["--quick", "--threads", "1"], tmp_path)
    assert result["settings"]["subjects"] == 2 and result["settings"]["repeats"] == 1
    cases = {row["case"]: row for row in result["throughput"]}
    assert set(cases) == {"one process", "torchrun, 1 process", "torchrun, 2 processes"}
    assert cases["torchrun, 2 processes"]["processes"] == 2
    for row in cases.values():
        (run,) = row["runs"]
        assert row["median_patches_per_s"] == run["median_patches_per_s"] > 0
        assert run["patches_per_epoch"] >= 2 and len(run["epoch_seconds"]) == result["settings"]["epochs"]
    assert [row["subjects"] for row in result["memory"]] == [1, 2]
    for row in result["memory"]:
        assert row["memory_mib"]["train"]["peak_rss_mib"] >= row["memory_mib"]["prepare"]["peak_rss_mib"] > 0
    assert result["load_average"]["end"] and result["machine"]["cores"] >= 1
    assert "| torchrun, 2 processes | 2 |" in markdown and "Speed-up over one process" in markdown
    assert "wrote results/cohort.json" in stdout
