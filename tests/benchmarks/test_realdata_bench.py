"""Tests of ``equidmri bench realdata``: a quick run on dipy's ``small_64D``."""

import pytest
from bench_run import run_bench


@pytest.mark.slow
def test_quick_run_scores_csd_and_shd_tv_against_the_csd_reference(tmp_path):
    result, markdown, _ = run_bench("realdata", ["--quick", "--threads", "1"], tmp_path)
    [volume] = result["volumes"]
    assert volume["volume"] == "small_64D" and volume["reference"].startswith("dipy CSD (lmax 8)")
    rows = {row["method"]: row for row in volume["rows"]}
    assert set(rows) == {"dipy CSD (lmax 8)", "SHD-TV (equidmri)"}
    assert rows["dipy CSD (lmax 8)"]["within_cone_pct"] == 100  # the reference itself
    assert rows["SHD-TV (equidmri)"]["voxels"] == volume["clear_wm_voxels"] > 0
    assert "## small_64D" in markdown and "| SHD-TV (equidmri) |" in markdown
    assert (tmp_path / "results" / "realdata.md").is_file()
