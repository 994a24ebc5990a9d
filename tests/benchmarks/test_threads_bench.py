"""Tests of ``equidmri bench threads``: a quick run (the default case, 1 epoch, alone and beside a busy loop)."""

import pytest
from bench_run import run_bench


@pytest.mark.slow
def test_quick_run_times_the_default_alone_and_beside_a_busy_process(tmp_path):
    result, markdown, _ = run_bench("threads", ["--quick"], tmp_path)
    assert result["settings"]["epochs"] == 1
    [row] = result["rows"]
    assert row["case"] == "default" and row["env"] == {} and row["options"] == []
    for condition in ("alone", "busy"):
        run = row[condition]
        assert 0 < run["fit_s"] < run["wall_s"] and run["threads"] >= 1
    assert "| default |" in markdown and "fit busy (s)" in markdown
