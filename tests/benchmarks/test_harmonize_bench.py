"""Tests of ``equidmri bench harmonize``: one --quick run, in process."""

import json
import sys

import pytest

from equidmri.bench.harmonize import COMBAT_ROW, bench_rows
from equidmri.cli.main import main
from equidmri.harmonize.subjects import PAIRED_PERCENTS


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("harmonize") / "results"
    assert main(["bench", "harmonize", "--quick", "--threads", "1", "--out", str(out)]) == 0
    return json.loads((out / "harmonization.json").read_text()), (out / "harmonization.md").read_text(), out


def test_every_harmonizer_is_scored_on_every_shell_and_the_real_subject(quick_run):
    record, _, _ = quick_run
    rows = [row for row, _, _ in bench_rows(steps=1)]
    assert list(record["methods"]) == [*rows, COMBAT_ROW]
    cyclic = [row for row in rows if row.startswith("cyclic")]
    assert cyclic[0] == "cyclic (unsupervised)" and cyclic[-1] == "cyclic (supervised)"
    assert len(cyclic) == 1 + len(PAIRED_PERCENTS) and {"SH-ResNet", "RISH", "baseline"} < set(rows)
    n_test = len(record["settings"]["splits"]["test"])
    for row, result in record["methods"].items():
        assert set(result["summary"]) == {"all", "b=1000", "b=2000", "b=3000"}
        if row == COMBAT_ROW:  # FA and MD maps only: no signal, no real subject, no downstream fODF
            assert (
                set(result["summary"]["all"]) == {"fa_mse", "md_mse"}
                and result["summary"]["all"]["fa_mse"]["n"] == n_test
            )
            assert result["real"] is None and result["downstream"] is None
            continue
        assert result["summary"]["all"]["signal_mse"]["n"] == n_test
        assert len(result["downstream"]["angle_deg"]) == n_test and 0 <= result["downstream"]["mean"] <= 90
        if row in ("baseline", "RISH", "RISH-global"):
            assert set(result["real"]) == {"all", "b=1000"}  # small_64D has one shell
        else:  # a network trained on three shells cannot take one
            assert result["real"] is None and result["final_loss"] > 0
    paired = [record["methods"][row]["paired_subjects"] for row in cyclic]
    assert paired[0] == 0 and paired == sorted(paired) and paired[-1] == len(record["settings"]["splits"]["train"])
    baseline, rish = (record["methods"][n]["summary"]["all"]["signal_mse"]["mean"] for n in ("baseline", "RISH"))
    assert rish < baseline


def test_best_and_second_best_and_each_method_against_the_baseline_are_tested(quick_run):
    record, _, _ = quick_run
    n_test = len(record["settings"]["splits"]["test"])
    assert len(record["tests"]["best_vs_second"]) == 4 * 5  # shells (all + 3) x metrics (4 + noise-free signal)
    for test in record["tests"]["best_vs_second"]:
        assert test["best"] != test["second"] and test["n"] == n_test
    assert {t["method"] for t in record["tests"]["vs_baseline"]} == set(record["methods"]) - {"baseline"}
    assert {t["metric"] for t in record["tests"]["vs_baseline"] if t["method"] == COMBAT_ROW} == {"fa_mse", "md_mse"}
    assert set(record["tests"]["downstream_vs_baseline"]) == set(record["methods"]) - {"baseline", COMBAT_ROW}


def test_markdown_states_the_command_the_combat_row_both_tables_downstream_and_the_figure(quick_run):
    record, markdown, out = quick_run
    assert record["command"] in markdown and "## Downstream: fODF peaks" in markdown
    combat_row = next(line for line in markdown.splitlines() if line.startswith(f"| {COMBAT_ROW} | – | "))
    assert combat_row.count(" – ") == 3  # signal MSE, SSIM, noise-free signal MSE; FA and MD have numbers
    assert "## Table 1 analogue" in markdown and "### b=3000 s/mm²" in markdown and "RISH vs baseline: p" in markdown
    assert "](harmonization.png)" in markdown and (out / "harmonization.png").stat().st_size > 10_000


def test_existing_results_are_kept_without_force(quick_run, capsys):
    _, _, out = quick_run
    assert main(["bench", "harmonize", "--quick", "--threads", "1", "--out", str(out)]) == 2
    assert "already exist" in capsys.readouterr().err


def test_a_cohort_too_small_to_split_is_refused_before_any_output(tmp_path, capsys):
    assert main(["bench", "harmonize", "--subjects", "3", "--out", str(tmp_path / "r")]) == 2
    assert "--subjects must be >= 5" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_a_missing_neurocombat_is_one_line_naming_the_extra_before_any_output(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "neuroCombat", None)  # import neuroCombat now raises ImportError
    assert main(["bench", "harmonize", "--quick", "--out", str(tmp_path / "r")]) == 2
    assert "pip install 'equidmri[bench]'" in capsys.readouterr().err and not (tmp_path / "r").exists()
