"""``equidmri fa train`` and ``equidmri fa predict``: outputs, and one-line errors that write nothing."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from cli_inputs import AFFINE, SHAPE, run_main, write_series

from equidmri.dmri.io import load_dwi
from equidmri.microstructure import FAModel
from equidmri.microstructure.schemes import JONES, SKARE

TINY_TRAIN = ["--n-voxels", "256", "--epochs", "2", "--threads", "1", "-q"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("fa_train") / "model"
    assert run_main(["fa", "train", "--model", "fcn", "--scheme", "skare", *TINY_TRAIN, "--out", str(out)]) == 0
    return out


def _series(folder, bvals, bvecs):
    """Isotropic noise-free voxels for the given gradients (FSL bvecs, det > 0: x negated), mask of all but one."""
    bvecs = np.asarray(bvecs, dtype=float)
    dwi = np.broadcast_to(1000.0 * np.exp(-np.asarray(bvals) * 0.8e-3), SHAPE + (len(bvals),))
    mask = np.ones(SHAPE, dtype=bool)
    mask[0, 0, 0] = False
    return write_series(folder, dwi, np.asarray(bvals, float), bvecs * [-1.0, 1.0, 1.0], AFFINE, mask)


def test_train_writes_a_loadable_model_and_run_record(trained):
    record = json.loads((trained / "run.json").read_text())
    assert record["model"] == "fcn" and record["n_voxels"] == 256 and len(record["mse_per_epoch"]) == 2
    assert FAModel.load(trained / "model.pt").scheme == "skare"


def test_predict_writes_the_models_fa_on_a_jones_acquisition(trained, tmp_path):
    inputs = _series(tmp_path / "jones", np.r_[0.0, np.full(6, 1000.0)], np.vstack([np.zeros(3), JONES]))
    out = tmp_path / "fa.nii.gz"
    assert run_main(["fa", "predict", "--model", str(trained / "model.pt"), *inputs.args(), "--out", str(out)]) == 0
    image = nib.load(out)
    assert image.shape == SHAPE
    np.testing.assert_allclose(image.affine, AFFINE)
    data = load_dwi(inputs.dwi, inputs.bvals, inputs.bvecs, inputs.mask)
    expected = FAModel.load(trained / "model.pt").predict(data.dwi[data.mask].astype(float), data.gtab())
    fa = image.get_fdata()
    np.testing.assert_allclose(fa[data.mask], expected, atol=1e-6)
    assert fa[0, 0, 0] == 0.0


_B0_AND_6 = np.r_[0.0, np.full(6, 1000.0)]
_SQUEEZED = SKARE * [1.0, 1.0, 0.02] / np.linalg.norm(SKARE * [1.0, 1.0, 0.02], axis=1, keepdims=True)
BAD_INPUTS = {
    "five directions": (
        np.r_[0.0, np.full(7, 1000.0)],
        np.vstack([np.zeros(3), SKARE[:5], -SKARE[:2]]),
        "needs >= 6 non-collinear gradient directions, got 5",
    ),
    "degenerate": (_B0_AND_6, np.vstack([np.zeros(3), _SQUEEZED]), "degenerate gradient scheme: condition number"),
    "no b0": (np.full(7, 1000.0), np.vstack([JONES[:1], SKARE]), "no b=0 volume"),
    "wrong shell": (np.r_[0.0, np.full(6, 3000.0)], np.vstack([np.zeros(3), SKARE]), "no volume at b ≈ 1000"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_acquisitions_fail_in_one_line_and_write_nothing(trained, tmp_path, capsys, case):
    bvals, bvecs, message = BAD_INPUTS[case]
    inputs = _series(tmp_path / "series", bvals, bvecs)
    out = tmp_path / "fa.nii.gz"
    capsys.readouterr()
    assert run_main(["fa", "predict", "--model", str(trained / "model.pt"), *inputs.args(), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("equidmri fa predict: error:") and message in error
    assert not out.exists()


def test_mismatched_counts_and_existing_outputs_fail_without_writing(trained, tmp_path, capsys):
    inputs = _series(tmp_path / "series", _B0_AND_6, np.vstack([np.zeros(3), SKARE]))
    inputs.bvals.write_text(" ".join(["0"] + ["1000"] * 5) + "\n")
    out = tmp_path / "fa.nii.gz"
    capsys.readouterr()
    assert run_main(["fa", "predict", "--model", str(trained / "model.pt"), *inputs.args(), "--out", str(out)]) == 2
    assert "counts disagree" in capsys.readouterr().err and not out.exists()
    out.write_text("keep")
    inputs = _series(tmp_path / "good", _B0_AND_6, np.vstack([np.zeros(3), SKARE]))
    assert run_main(["fa", "predict", "--model", str(trained / "model.pt"), *inputs.args(), "--out", str(out)]) == 2
    assert "use --force" in capsys.readouterr().err and out.read_text() == "keep"
    assert run_main(["fa", "train", *TINY_TRAIN, "--out", str(trained)]) == 2
    assert "use --force" in capsys.readouterr().err


def test_help_states_units(capsys):
    assert run_main(["fa", "predict", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "s/mm²" in text and "dimensionless" in text
