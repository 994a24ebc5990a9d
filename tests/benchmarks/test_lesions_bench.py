"""Tests of ``equidmri bench lesions``: one --quick run, in process."""

import json

import pytest

from equidmri.bench.lesions import METRICS, claims
from equidmri.cli.main import main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lesions") / "results"
    assert main(["bench", "lesions", "--quick", "--threads", "1", "--out", str(out)]) == 0
    return json.loads((out / "lesions.json").read_text()), (out / "lesions.md").read_text(), out


def test_both_networks_are_scored_on_both_test_sets_with_all_three_metrics(quick_run):
    record, _, _ = quick_run
    rows = {(r["network"], r["test_set"]) for r in record["summary"]}
    assert rows == {(n, t) for n in ("pq", "cnn") for t in ("test", "test_rotated")}
    for row in record["summary"]:
        for metric in ("roc_auc", "average_precision", "dice"):
            assert 0.0 <= row[metric]["mean"] <= 1.0 and row[metric]["n"] == 1
    assert record["settings"]["synthetic"] is True


def test_markdown_states_the_command_the_synthetic_data_and_the_figure(quick_run):
    record, markdown, out = quick_run
    assert record["command"] in markdown and "**Synthetic data**" in markdown
    for figure in ("lesions.png", "lesions_sizes.png", "lesions_maps.png"):  # Fig. 1, 2 and 3
        assert (out / figure).stat().st_size > 0 and f"]({figure})" in markdown
    assert [c["holds"] in (True, False) for c in record["claims"]] == [True] * 3  # one fraction: no ¼ claim
    assert "The paper's claims on these data" in markdown


def _row(network, fraction, test_set, value):
    stat = {"mean": value, "ci95": None, "n": 1}
    return {"network": network, "fraction": fraction, "test_set": test_set} | dict.fromkeys(METRICS, stat)


def test_claims_follow_the_means_and_can_fail():
    values = {("pq", 0.25): 0.7, ("pq", 1.0): 0.9, ("cnn", 0.25): 0.5, ("cnn", 1.0): 0.8}
    rotated = {("pq", 0.25): 0.7, ("pq", 1.0): 0.9, ("cnn", 0.25): 0.4, ("cnn", 1.0): 0.6}
    summary = [_row(n, f, "test", v) for (n, f), v in values.items()]
    summary += [_row(n, f, "test_rotated", v) for (n, f), v in rotated.items()]
    checks = {c["claim"]: c["holds"] for c in claims(summary)}
    assert checks["pq better than cnn on all three metrics (test, all training volumes)"] is True
    assert checks["pq on 0.25 of the volumes >= cnn on all (test)"] is False  # 0.7 < 0.8
    assert checks["pq on 0.25 of the volumes >= cnn on all (test_rotated)"] is True  # 0.7 >= 0.6
    assert checks["the pq advantage is larger on test_rotated than on test (all training volumes)"] is True


def test_existing_results_are_refused_without_force(quick_run, capsys):
    _, _, out = quick_run
    assert main(["bench", "lesions", "--quick", "--threads", "1", "--out", str(out)]) == 2
    assert "already exist" in capsys.readouterr().err
