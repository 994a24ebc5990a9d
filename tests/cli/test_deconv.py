"""Tests of ``equidmri deconv``: input validation before any output, the outputs, --force and --resume."""

import json
import logging
import shutil

import nibabel as nib
import numpy as np
import pytest
from cli_inputs import AFFINE, SHAPE, TINY_NET, Inputs, run_main, write_series

import equidmri.cli.common as cli_common
from equidmri.recon.train import TrainingDivergedError
from equidmri.sphere.sh import n_coeffs

pytestmark = pytest.mark.filterwarnings("ignore:SH degree lowered:UserWarning")

RUN_KEYS = {
    "version",
    "command",
    "argv",
    "arguments",
    "data_shape",
    "mask_voxels",
    "mask_source",
    "shells",
    "shell_lmax",
    "timings",
    "final_loss",
    "history",
    "device",
    "threads",
}
STAGES = {"load", "mask", "response", "build", "fit", "peaks", "write", "qc", "total"}


def _read(inputs: Inputs) -> dict:
    image = nib.load(inputs.dwi)
    return {
        "dwi": np.asarray(image.dataobj),
        "affine": image.affine,
        "bvals": np.loadtxt(inputs.bvals),
        "bvecs": np.loadtxt(inputs.bvecs).T,
        "mask": np.asarray(nib.load(inputs.mask).dataobj).astype(bool),
    }


def _variant(inputs: Inputs, folder, **changes) -> Inputs:
    """A copy of ``inputs`` in ``folder`` with some arrays replaced."""
    series = {**_read(inputs), **changes}
    return write_series(folder, series["dwi"], series["bvals"], series["bvecs"], series["affine"], series["mask"])


def _deconv(inputs: Inputs, out, *extra: str) -> int:
    return run_main(["deconv", *inputs.args(), "--out", str(out), *TINY_NET, *extra])


def _one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1
    assert lines[0].startswith("equidmri deconv: error: ")
    return lines[0]


def _bad_inputs(synthetic: Inputs) -> dict:
    series = _read(synthetic)
    long_bvecs = series["bvecs"].copy()
    long_bvecs[5] *= 1.5
    return {
        "count mismatch": ({"bvals": np.r_[series["bvals"], 1000.0]}, "counts disagree"),
        "non-unit bvecs": ({"bvecs": long_bvecs}, "unit norm"),
        "no b0": ({"bvals": np.where(series["bvals"] == 0, 1000.0, series["bvals"])}, "no b=0 volume"),
        "3D input": ({"dwi": series["dwi"][..., 0]}, "needs a 4D image"),
        "mask shape": ({"mask": series["mask"][..., :-1]}, "mask must be 3D with the DWI's spatial shape"),
        "empty mask": ({"mask": np.zeros_like(series["mask"])}, "mask holds no voxel"),
    }


BAD_INPUTS = ["count mismatch", "non-unit bvecs", "no b0", "3D input", "mask shape", "empty mask"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_error_line_exit_2_and_writes_nothing(case, synthetic, tmp_path, capsys):
    changes, message = _bad_inputs(synthetic)[case]
    inputs = _variant(synthetic, tmp_path / "in", **changes)
    out = tmp_path / "out"
    assert _deconv(inputs, out) == 2
    assert message in _one_error_line(capsys)
    assert not out.exists()


def test_missing_input_file_is_an_error(synthetic, tmp_path, capsys):
    inputs = Inputs(tmp_path / "absent.nii.gz", synthetic.bvals, synthetic.bvecs)
    assert _deconv(inputs, tmp_path / "out") == 2
    assert "DWI file not found" in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_existing_directory_without_force_is_refused_and_unchanged(synthetic, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _deconv(synthetic, out) == 2
    assert "use --force" in _one_error_line(capsys)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_resume_without_checkpoint_is_refused(synthetic, tmp_path, capsys):
    assert _deconv(synthetic, tmp_path, "--resume") == 2
    assert "--resume needs" in _one_error_line(capsys)


def test_unavailable_device_is_refused(synthetic, tmp_path, capsys):
    if cli_common.torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert _deconv(synthetic, tmp_path / "out", "--device", "cuda") == 2
    assert "needs CUDA" in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_diverged_training_exits_1_with_a_clear_message(synthetic, tmp_path, capsys, monkeypatch):
    def diverge(*args, **kwargs):
        raise TrainingDivergedError("loss term(s) ['recon'] became non-finite at epoch 1")

    monkeypatch.setattr(cli_common, "run_deconv", diverge)
    assert _deconv(synthetic, tmp_path / "out") == 1
    assert "became non-finite" in _one_error_line(capsys)


def test_outputs_share_the_input_affine(synthetic_run):
    for name in ("fod", "peaks", "peak_values", "fractions"):
        np.testing.assert_allclose(nib.load(synthetic_run / f"{name}.nii.gz").affine, AFFINE, atol=1e-6)


def test_fod_has_45_finite_coefficients_inside_the_mask(synthetic_run):
    fod = np.asarray(nib.load(synthetic_run / "fod.nii.gz").dataobj)
    assert fod.shape == SHAPE + (n_coeffs(8),)
    assert np.all(np.isfinite(fod))
    assert np.all(fod[..., 0] != 0)  # the all-ones mask: every voxel has an fODF


def test_peaks_are_unit_or_zero_with_matching_values(synthetic_run):
    peaks = np.asarray(nib.load(synthetic_run / "peaks.nii.gz").dataobj)
    values = np.asarray(nib.load(synthetic_run / "peak_values.nii.gz").dataobj)
    norms = np.linalg.norm(peaks.reshape(SHAPE + (-1, 3)), axis=-1)
    assert values.shape == norms.shape == SHAPE + (3,)
    np.testing.assert_allclose(norms[norms > 0], 1.0, atol=1e-5)
    assert np.array_equal(norms > 0, values > 0)


def test_fractions_response_checkpoint_and_qc_are_written(synthetic_run):
    assert nib.load(synthetic_run / "fractions.nii.gz").shape == SHAPE + (1,)  # single shell: WM only
    assert json.loads((synthetic_run / "response.json").read_text())["tissues"] == ["wm"]
    assert (synthetic_run / "model.pt").stat().st_size > 0
    assert (synthetic_run / "qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_json_records_the_run(synthetic_run):
    record = json.loads((synthetic_run / "run.json").read_text())
    assert RUN_KEYS <= set(record)
    assert STAGES <= set(record["timings"])
    timings = record["timings"]  # the QC figure is drawn beside the writes: the total counts the pair once
    sequential = sum(t for stage, t in timings.items() if stage not in ("write", "qc", "total"))
    assert sequential + max(timings["write"], timings["qc"]) - 0.01 <= timings["total"]
    assert timings["total"] <= sequential + timings["write"] + timings["qc"] + 0.01
    assert record["data_shape"] == [*SHAPE, 31]
    assert record["mask_voxels"] == np.prod(SHAPE)
    assert record["mask_source"] == "given"
    assert (record["device"], record["threads"]) == ("cpu", 1)
    assert record["shells"] == pytest.approx([1000.0])
    assert record["shell_lmax"] == [6]  # 30 directions support degree 6
    assert len(record["history"]) == record["arguments"]["epochs"] == 2
    assert record["final_loss"] == record["history"][-1]
    assert set(record["final_loss"]) >= {"recon", "nn", "sparsity", "tv", "total"}


def test_force_writes_into_an_existing_directory(synthetic, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    assert _deconv(synthetic, out, "--force", "--epochs", "1") == 0
    assert (out / "fod.nii.gz").is_file()


def test_nan_voxels_warn_and_are_masked(synthetic, tmp_path, caplog):
    dwi = _read(synthetic)["dwi"].copy()
    dwi[2, 3, 1, 4] = np.nan
    inputs = _variant(synthetic, tmp_path / "in", dwi=dwi)
    not_quiet = [option for option in TINY_NET if option != "-q"]
    with caplog.at_level(logging.WARNING, logger="py.warnings"):  # the CLI logs warnings (equidmri.cli.logs)
        assert run_main(["deconv", *inputs.args(), "--out", str(tmp_path / "out"), *not_quiet, "--epochs", "1"]) == 0
    assert [r.getMessage() for r in caplog.records if "NaN or Inf" in r.getMessage()] == [
        f"UserWarning: 1 voxel(s) of {inputs.dwi} hold NaN or Inf; they are set to 0 and excluded from the mask"
    ]
    fod = np.asarray(nib.load(tmp_path / "out" / "fod.nii.gz").dataobj)
    assert np.all(fod[2, 3, 1] == 0)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["mask_voxels"] == np.prod(SHAPE) - 1


def test_missing_mask_is_computed_and_reported(crop_run):
    record = json.loads((crop_run / "run.json").read_text())
    assert record["mask_source"] == "computed"
    assert record["mask_voxels"] == np.prod(record["data_shape"][:3])  # a crop inside the brain: no background


def test_outputs_of_an_oblique_det_negative_image_keep_its_affine(crop_run, small_64d_crop):
    affine = nib.load(small_64d_crop.dwi).affine
    assert np.linalg.det(affine[:3, :3]) < 0
    for name in ("fod", "peaks", "peak_values", "fractions"):
        np.testing.assert_allclose(nib.load(crop_run / f"{name}.nii.gz").affine, affine, atol=1e-4)


def test_resume_continues_the_saved_training(crop_run, small_64d_crop, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(crop_run, out)
    assert run_main(["deconv", *small_64d_crop.args(), "--out", str(out), *TINY_NET, "--epochs", "3", "--resume"]) == 0
    history = json.loads((out / "run.json").read_text())["history"]
    first = json.loads((crop_run / "run.json").read_text())["history"]
    assert len(history) == 3
    assert history[:2] == first
