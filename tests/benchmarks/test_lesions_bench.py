"""Tests of ``equidmri bench lesions``: one --quick run, in process."""

import json

import pytest

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
    assert (out / "lesions.png").stat().st_size > 0 and "lesions.png" in markdown


def test_existing_results_are_refused_without_force(quick_run, capsys):
    _, _, out = quick_run
    assert main(["bench", "lesions", "--quick", "--threads", "1", "--out", str(out)]) == 2
    assert "already exist" in capsys.readouterr().err
