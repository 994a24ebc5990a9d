"""``equidmri denoise train`` and ``apply`` on dipy's small_64D, in process: outputs, run records and the contract
(bad input: one line, exit 2, nothing written; existing outputs need --force)."""

import json

import numpy as np
import pytest

from equidmri.cli.main import main
from equidmri.data import real_volume_paths
from equidmri.denoise import apply_denoiser, load_denoiser
from equidmri.dmri.io import load_dwi, load_nifti_volume

TRAIN = ["--epochs", "1", "--copies", "1", "--snr", "20", "--width", "4", "--threads", "1"]


@pytest.fixture(scope="module")
def inputs():
    dwi, bvals, bvecs = real_volume_paths("small_64D")
    return ["--dwi", str(dwi), "--bvals", str(bvals), "--bvecs", str(bvecs)]


@pytest.fixture(scope="module")
def trained(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("denoiser") / "model"
    assert main(["denoise", "train", *inputs, *TRAIN, "--out", str(out)]) == 0
    return out


def test_train_writes_a_weights_only_model_and_run_json(trained):
    record = json.loads((trained / "run.json").read_text())
    assert record["command"] == "equidmri denoise train" and record["spec"]["layer"] == "sh"
    assert record["voxels"] == 1000 and record["snrs"] == [20.0] and np.isfinite(record["final_mse"])


def test_apply_writes_what_the_library_computes(inputs, trained, tmp_path):
    out = tmp_path / "denoised.nii.gz"
    assert main(["denoise", "apply", "--model", str(trained / "model.pt"), *inputs, "--out", str(out), "-q"]) == 0
    data = load_dwi(*real_volume_paths("small_64D"))
    network, _ = load_denoiser(trained / "model.pt", data.bvals, data.bvecs)
    expected = apply_denoiser(network, data.dwi.reshape(-1, data.dwi.shape[-1]), data.bvals)
    written, _ = load_nifti_volume(out)
    np.testing.assert_allclose(written.reshape(expected.shape), expected, rtol=1e-5, atol=1e-3)
    assert not np.allclose(written, data.dwi)  # it changed something
    record = json.loads((tmp_path / "denoised.json").read_text())
    assert record["command"] == "equidmri denoise apply" and record["voxels"] == 1000


def test_apply_refuses_existing_outputs_without_force(inputs, trained, tmp_path, capsys):
    out = tmp_path / "denoised.nii.gz"
    out.write_bytes(b"keep")
    argv = ["denoise", "apply", "--model", str(trained / "model.pt"), *inputs, "--out", str(out)]
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == b"keep"
    assert main([*argv, "--force", "-q"]) == 0 and out.read_bytes() != b"keep"


@pytest.mark.parametrize(
    "change, message",
    [
        (["--model", "MISSING"], "does not exist"),
        (["--model", "RUNJSON"], "not a readable equidmri checkpoint"),
        (["--bvals", "SHORT"], "b-values"),
    ],
)
def test_apply_bad_input_is_one_line_exit_2_and_nothing_written(inputs, trained, tmp_path, capsys, change, message):
    (tmp_path / "short.bval").write_text("0 1000 1000\n")
    replace = {"MISSING": str(tmp_path / "none.pt"), "RUNJSON": str(trained / "run.json"),
               "SHORT": str(tmp_path / "short.bval")}  # fmt: skip
    argv = dict(zip(inputs[::2], inputs[1::2])) | {"--model": str(trained / "model.pt")}
    argv[change[0]] = replace[change[1]]
    out = tmp_path / "denoised.nii.gz"
    assert main(["denoise", "apply", *sum(argv.items(), ()), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("equidmri denoise apply: error:") and message in err[0]
    assert not out.exists() and not (tmp_path / "denoised.json").exists()


def test_train_refuses_dense_in_sh_space_before_writing(inputs, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["denoise", "train", *inputs, "--layer", "dense", "--space", "sh", "--out", str(out)]) == 2
    assert "no SH space" in capsys.readouterr().err and not out.exists()


def test_help_names_both_subcommands(capsys):
    assert main(["denoise", "--help"]) == 0
    assert "train" in capsys.readouterr().out
