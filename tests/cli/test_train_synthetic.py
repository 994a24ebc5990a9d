"""``equidmri train --synthetic``: the pretrained recipe from the command line, unsupervised or supervised."""

import json

from cli_inputs import run_main

from equidmri.recon.checkpoint import load_checkpoint

TINY = ["--epochs", "1", "--patches-per-epoch", "1", "--patch-size", "6", "--threads", "1", "-q"]


def test_supervised_recipe_records_the_true_fodf_term_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "m"
    assert run_main(["train", "--synthetic", "--supervised", "2", "--out", str(out), *TINY]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["arguments"]["supervised"] == 2.0 and "fodf" in record["history"][0]
    assert load_checkpoint(out / "model.pt")["meta"]["pretrained"]["supervised_weight"] == 2.0
    before = (out / "model.pt").read_bytes()
    assert run_main(["train", "--synthetic", "--out", str(out), *TINY]) == 2  # exists, no --force
    assert (out / "model.pt").read_bytes() == before


def test_negative_supervised_weight_is_a_usage_error(tmp_path):
    assert run_main(["train", "--synthetic", "--supervised", "-1", "--out", str(tmp_path / "m"), *TINY]) == 2
    assert not (tmp_path / "m").exists()
