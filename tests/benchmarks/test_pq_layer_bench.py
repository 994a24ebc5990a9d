"""Tests of ``equidmri bench pq-layer``: the quick run, in this process (its cases run in-process too)."""

import json

from equidmri.bench.options.pq_layer import QUICK_CASES, QUICK_EDGE, QUICK_N_Q
from equidmri.cli.main import main


def test_quick_run_records_both_passes_of_both_kernels(tmp_path, capsys):
    assert main(["bench", "pq-layer", "--quick", "--threads", "1", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "pq_layer.json").read_text())
    markdown = (tmp_path / "pq_layer.md").read_text()
    assert record["settings"]["edge"] == QUICK_EDGE and record["settings"]["n_q"] == QUICK_N_Q
    rows = record["records"]
    assert [(r["layer"], r["variant"], r["pass"]) for r in rows] == [
        (*case.split(":"), pass_) for case in QUICK_CASES for pass_ in ("fwd", "fwdbwd")
    ]
    for row in rows:
        assert len(row["times_s"]) == 1 and 0 < row["median_s"] < 60 and row["peak_mem_mb"] >= 0
        assert row["gmac_forward"] > 0 and row["dense_kernel_mb"] > 0
    assert {r["method"] for r in rows} == {"pqw", "dense"}  # tp-pqw, combined-dense
    by_method = record["macs_by_method"]["hidden"]
    assert by_method["pwq"] < by_method["pqw"]  # the cheaper order for a wide input
    assert "| first | tp-pqw |" in markdown and "| first | combined-dense |" in markdown


def test_bad_options_are_refused_before_any_measurement(tmp_path, capsys):
    assert main(["bench", "pq-layer", "--quick", "--repeats", "0", "--out", str(tmp_path)]) == 2
    assert "--repeats must be >= 1" in capsys.readouterr().err
    assert main(["bench", "pq-layer", "--quick", "--device", "cuda:0", "--out", str(tmp_path)]) == 2
    assert "CPU memory (peak RSS) only" in capsys.readouterr().err
    assert main(["bench", "pq-layer", "--cases", "first:tp-sparse", "--out", str(tmp_path)]) == 2
    assert "expected LAYER:VARIANT" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
