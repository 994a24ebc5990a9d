"""Tests of ``equidmri predict``: same model, same fODFs; a different protocol is refused clearly."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from cli_inputs import Inputs, run_main, synthetic_series

pytestmark = pytest.mark.filterwarnings("ignore:SH degree lowered:UserWarning")


def _predict(model, inputs: Inputs, out, *extra: str) -> int:
    return run_main(
        ["predict", "--model", str(model), *inputs.args(), "--out", str(out), "--threads", "1", "-q", *extra]
    )


def test_predict_on_the_training_volume_reproduces_the_fod(synthetic_run, synthetic, tmp_path):
    out = tmp_path / "out"
    assert _predict(synthetic_run / "model.pt", synthetic, out) == 0
    predicted = np.asarray(nib.load(out / "fod.nii.gz").dataobj)
    trained = np.asarray(nib.load(synthetic_run / "fod.nii.gz").dataobj)
    np.testing.assert_allclose(predicted, trained, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nib.load(out / "fod.nii.gz").affine, nib.load(synthetic.dwi).affine, atol=1e-6)


def test_predict_writes_no_checkpoint_or_response(synthetic_run, synthetic, tmp_path):
    out = tmp_path / "out"
    assert _predict(synthetic_run / "model.pt", synthetic, out) == 0
    assert not (out / "model.pt").exists()
    assert not (out / "response.json").exists()
    record = json.loads((out / "run.json").read_text())
    assert record["final_loss"] is None
    assert "predict" in record["timings"]


def test_predict_refuses_a_protocol_with_other_shells(synthetic_run, tmp_path, capsys):
    inputs = synthetic_series(tmp_path / "b2000", bvalue=2000.0)
    out = tmp_path / "out"
    assert _predict(synthetic_run / "model.pt", inputs, out) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("equidmri predict: error: the acquisition's shells [2000.0] s/mm² differ from the model's")
    assert not out.exists()


def test_predict_refuses_a_file_that_is_not_a_checkpoint(synthetic, tmp_path, capsys):
    model = tmp_path / "model.pt"
    model.write_bytes(b"not a checkpoint")
    assert _predict(model, synthetic, tmp_path / "out") == 2
    assert "is not a readable equidmri checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


class _Payload:
    """Unpickling this object would create the folder ``target`` (stands for any code)."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_predict_refuses_a_model_file_that_would_run_code(synthetic, tmp_path, capsys):
    target = tmp_path / "payload_ran"
    model = tmp_path / "untrusted.pt"
    torch.save({"meta": {}, "state_dict": {}, "payload": _Payload(target)}, model)
    assert _predict(model, synthetic, tmp_path / "out") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("equidmri predict: error: refused to load ")
    assert "which could run code" in lines[0]
    assert not target.exists()
    assert not (tmp_path / "out").exists()
