"""``equidmri bench pretrained --quick``: the four sections are measured and the page states every target (section
``real`` in the second test, alone, so that no section runs twice)."""

import json

import pytest

from equidmri.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore:SH degree lowered:UserWarning")


@pytest.mark.slow
def test_quick_bench_writes_the_other_sections(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sections = "accuracy,speed,multishell"
    assert (
        main(["bench", "pretrained", "--quick", "--sections", sections, "--out", str(tmp_path / "r"), "--threads", "1"])
        == 0
    )
    record = json.loads((tmp_path / "r" / "pretrained.json").read_text())
    methods = {row["method"] for row in record["accuracy"]}
    assert methods == {
        "pretrained SHD-TV",
        "pretrained SHD-TV, --refine-tv 0",  # the default applies the spatial term at every resolution
        "dipy CSD lmax 6",
        "dipy CSD lmax 8",
    }
    applied = {(r["resolution"], r["refine_tv"]) for r in record["accuracy"] if r["method"] == "pretrained SHD-TV"}
    assert applied == {("low", 3e-5), ("high", 9.67e-6), ("other", 1.93e-5)}  # 3e-5 x 29 / (29, 90, 45)
    assert all(0.0 <= row["f1"] <= 1.0 for row in record["accuracy"])
    cases = record["speed"]["cases"]
    assert len(cases) == 3 and all(c["median_s"] > 0 and c["peak_rss_mib"] > 0 for c in cases.values())
    ours = cases["equidmri deconv (pretrained), end to end"]["seconds"]
    for name, case in cases.items():  # dipy's rows: their time over ours in each round
        if name.startswith("dipy"):
            assert case["round_ratios"] == [theirs / mine for theirs, mine in zip(case["seconds"], ours)]
            assert len(case["round_ratios"]) == len(ours) == record["settings"]["repeats"]
    hcp = record["speed"]["hcp"]
    assert [r["volumes"] for r in hcp["runs"]] == [31, 61] and hcp["extrapolated_volumes"] == 288
    assert all(r["shape"] == [20, 24, 20, r["volumes"]] and r["peak_rss_mib"] > 0 for r in hcp["runs"])
    multi = {row["method"]: row for row in record["multishell"]}
    assert set(multi) == {"pretrained SHD-TV (multi-shell)", "dipy MSMT-CSD lmax 8"}
    assert all(0.0 <= row["f1"] <= 1.0 and row["directions_per_shell"] == 90 for row in multi.values())
    page = (tmp_path / "r" / "pretrained.md").read_text()
    assert page.count("**met**") + page.count("**missed**") == 7
    assert page.count("; per round ") == 2 and "rounds, each running the cases in turn" in page
    assert "## 4. Multi-shell phantoms" in page and "(no target; " in page and " vs MSMT-CSD " in page
    assert page.count("default (`--refine-tv 3e-05` here), low:") == 1
    assert page.count("default (`--refine-tv 9.67e-06` here), high:") == 1
    assert page.count("(not the default here)") == 2


def test_sections_run_alone_and_the_page_says_which_were_not_run(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["bench", "pretrained", "--quick", "--sections", "real", "--out", str(out), "--threads", "1"]) == 0
    record = json.loads((out / "pretrained.json").read_text())
    assert record["sections"] == ["real"] and "accuracy" not in record and "speed" not in record
    assert record["small64d"]["n_voxels"] == 405 and record["small64d"]["other"]["n_voxels"] == 405
    assert (record["small64d"]["refine_tv"], record["small64d"]["subset"]["refine_tv"]) == (1.36e-5, 3e-5)
    subset = record["small64d"]["subset"]["within_cone"]
    assert len(subset) == 4 and all(len(v) == 1 and all(0 <= x <= 1 for x in v) for v in subset.values())
    page = (out / "pretrained.md").read_text()
    assert page.count("**met**") + page.count("**missed**") == 1
    assert "Sections not run in this invocation: accuracy, speed, multishell." in page
    assert main(["bench", "pretrained", "--quick", "--sections", "real,nonsense", "--out", str(tmp_path / "x")]) == 2
    assert "sections must be among" in capsys.readouterr().err
