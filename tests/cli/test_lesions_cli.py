"""Tests of ``equidmri lesions data``, ``train`` and ``predict``, in process on a tiny synthetic set."""

import json

import numpy as np
import pytest
import torch

from equidmri.cli.main import main
from equidmri.dmri.io import load_dwi, load_nifti_volume, save_fsl_gradients, save_nifti
from equidmri.eval.equivariance import cube_rotations, rotate_voxels

AFFINE = np.diag([-1.0, 1.0, 1.0, 1.0])
TINY = ["--size", "8", "--train", "2", "--val", "1", "--test", "1", "--threads", "1", "-q"]


@pytest.fixture(scope="module")
def lesion_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("lesions") / "set"
    assert main(["lesions", "data", "--out", str(out), *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def pq_model(lesion_set):
    out = lesion_set.parent / "pq"
    assert main(["lesions", "train", "--data", str(lesion_set), "--out", str(out), "--epochs", "1", "-q"]) == 0
    return out / "model.pt"


def _predict(model, folder, out, *extra):
    inputs = ["--dwi", str(folder / "dwi.nii.gz"), "--bvals", str(folder / "bvals"), "--bvecs", str(folder / "bvecs")]
    argv = ["lesions", "predict", "--model", str(model), *inputs, "--mask", str(folder / "mask.nii.gz")]
    return main([*argv, "--out", str(out), "-q", *extra])


def test_data_writes_every_split_with_labels(lesion_set):
    for split, count in (("train", 2), ("val", 1), ("test", 1), ("test_rotated", 1)):
        assert len((lesion_set / f"{split}.tsv").read_text().splitlines()) == count + 1
    labels = load_nifti_volume(lesion_set / "test" / "test-000" / "labels.nii.gz")[0]
    assert labels.sum() > 0
    assert json.loads((lesion_set / "run.json").read_text())["synthetic"] is True


def test_train_writes_the_model_and_its_history(pq_model):
    record = json.loads((pq_model.parent / "run.json").read_text())
    assert record["network"] == "pq" and len(record["history"]["train"]) == 1 and record["parameters"] > 0


def test_predict_of_a_rotated_head_with_rotated_bvecs_is_the_rotated_map(lesion_set, pq_model, tmp_path):
    folder = lesion_set / "test" / "test-000"
    assert _predict(pq_model, folder, tmp_path / "prob.nii.gz", "--threshold", "0.5") == 0
    data = load_dwi(folder / "dwi.nii.gz", folder / "bvals", folder / "bvecs", folder / "mask.nii.gz")
    rotation = cube_rotations()[7]  # a 90° turn that is not about z
    rotated = tmp_path / "rotated"
    rotated.mkdir()
    rotate = lambda a: rotate_voxels(torch.from_numpy(np.ascontiguousarray(a)), rotation, 0).numpy()  # noqa: E731
    save_nifti(rotated / "dwi.nii.gz", rotate(data.dwi), AFFINE)
    save_nifti(rotated / "mask.nii.gz", rotate(data.mask), AFFINE)
    save_fsl_gradients(rotated / "bvals", rotated / "bvecs", data.bvals, data.bvecs @ rotation.T, AFFINE)
    assert _predict(pq_model, rotated, tmp_path / "prob_rotated.nii.gz") == 0
    probability = load_nifti_volume(tmp_path / "prob.nii.gz")[0]
    of_rotated = load_nifti_volume(tmp_path / "prob_rotated.nii.gz")[0]
    assert probability[data.mask].std() > 1e-4  # not a constant map, so the comparison means something
    np.testing.assert_allclose(of_rotated, rotate(probability), atol=2e-5)
    assert np.abs(of_rotated - probability).max() > 1e-3  # the map did move
    labels = load_nifti_volume(tmp_path / "prob_labels.nii.gz")[0]
    np.testing.assert_array_equal(labels, probability >= 0.5)
    assert json.loads((tmp_path / "prob_run.json").read_text())["network"] == "pq"


def test_predict_refuses_an_existing_output_and_writes_nothing(lesion_set, pq_model, tmp_path, capsys):
    (tmp_path / "prob.nii.gz").write_text("keep")
    assert _predict(pq_model, lesion_set / "test" / "test-000", tmp_path / "prob.nii.gz") == 2
    assert "already exist" in capsys.readouterr().err
    assert (tmp_path / "prob.nii.gz").read_text() == "keep" and not (tmp_path / "prob_run.json").exists()


def test_cnn_refuses_a_scan_with_another_number_of_volumes(lesion_set, tmp_path, capsys):
    out = tmp_path / "cnn"
    argv = ["lesions", "train", "--data", str(lesion_set), "--out", str(out), "--model", "cnn", "--epochs", "1"]
    assert main([*argv, "-q"]) == 0
    folder = lesion_set / "test" / "test-000"
    data = load_dwi(folder / "dwi.nii.gz", folder / "bvals", folder / "bvecs")
    short = tmp_path / "short"
    short.mkdir()
    save_nifti(short / "dwi.nii.gz", data.dwi[..., :-1], AFFINE)
    save_nifti(short / "mask.nii.gz", load_nifti_volume(folder / "mask.nii.gz")[0], AFFINE)
    save_fsl_gradients(short / "bvals", short / "bvecs", data.bvals[:-1], data.bvecs[:-1], AFFINE)
    assert _predict(out / "model.pt", short, tmp_path / "prob.nii.gz") == 2
    assert "cannot take" in capsys.readouterr().err and not (tmp_path / "prob.nii.gz").exists()


def test_train_refuses_a_folder_that_is_not_a_lesion_set(tmp_path, capsys):
    assert main(["lesions", "train", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "-q"]) == 2
    assert "lesion set" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_help_names_the_synthetic_data(capsys):
    assert main(["lesions", "data", "--help"]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
