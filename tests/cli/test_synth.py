"""``equidmri synth`` end to end on dipy's small_64D, and its refusals of bad input (exit 2, nothing written)."""

import json

import numpy as np
import pytest

from equidmri.cli.main import main
from equidmri.data import real_volume_paths


@pytest.fixture(scope="module")
def inputs():
    dwi, bvals, bvecs = real_volume_paths("small_64D")
    return ["--dwi", str(dwi), "--bvals", str(bvals), "--bvecs", str(bvecs)]


def test_synth_writes_signals_ground_truth_and_statistics(inputs, tmp_path, capsys):
    out, stats = tmp_path / "synth.npz", tmp_path / "stats.json"
    argv = ["synth", *inputs, "--mode", "sample", "--n-voxels", "500", "--seed", "3", "--out", str(out)]
    assert main([*argv, "--json", str(stats), "--threads", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    with np.load(out) as archive:
        arrays = {name: archive[name] for name in archive.files}
    assert arrays["signals"].shape == (500, 65) and arrays["signals"].dtype == np.float32
    assert arrays["fibre_dirs"].shape == (500, 3, 3) and str(arrays["mode"]) == "sample"
    np.testing.assert_allclose(arrays["tissue_fractions"].sum(1), 1.0)
    record = json.loads(stats.read_text())
    assert record["voxels"]["wm"] > 50 and record["snr"] > 1 and record["snr_method"] == "dti-residual"
    assert record["arguments"]["mode"] == "sample" and len(record["shells"]) == 1
    with_snr = tmp_path / "snr.npz"
    assert main([*argv[:-1], str(with_snr), "--snr", "50"]) == 0
    assert float(np.load(with_snr)["snr"]) == 50.0 and float(arrays["snr"]) == pytest.approx(record["snr"])
    again = tmp_path / "again.npz"
    assert main([*argv[:-1], str(again)]) == 0  # same seed, same voxels
    with np.load(again) as archive:
        np.testing.assert_array_equal(archive["signals"], arrays["signals"])


def test_synth_refuses_an_existing_output_without_force(inputs, tmp_path, capsys):
    out = tmp_path / "synth.npz"
    out.write_bytes(b"keep")
    argv = ["synth", *inputs, "--n-voxels", "10", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exist" in err and "--force" in err
    assert out.read_bytes() == b"keep"
    assert main([*argv, "--force"]) == 0
    assert np.load(out)["signals"].shape == (10, 65)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mode", "randomwm"], "invalid choice"),
        (["--n-voxels", "0"], "must be in [1"),
        (["--n-voxels", "-5"], "must be in [1"),
        (["--snr", "0"], "must be in (0.0"),
        (["--out-suffix"], "unrecognized arguments"),
    ],
)
def test_synth_refuses_bad_options_with_exit_2(inputs, tmp_path, capsys, extra, message):
    argv = ["synth", *inputs, "--out", str(tmp_path / "s.npz"), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--out": "s.npy"}, "--out must end in .npz"),
        ({"--dwi": "missing.nii.gz"}, "missing.nii.gz"),
        ({"--json": "s.npz"}, "must be different files"),
    ],
)
def test_synth_refuses_bad_files_in_one_line(inputs, tmp_path, capsys, change, message):
    options = dict(zip(inputs[::2], inputs[1::2]), **{"--out": str(tmp_path / "s.npz")})
    options.update({key: str(tmp_path / value) for key, value in change.items()})
    assert main(["synth", *[word for pair in options.items() for word in pair]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("equidmri synth: error:") and err.count("\n") == 1 and message in err
    assert not any(tmp_path.iterdir())


def test_synth_help_states_units_and_modes(capsys):
    assert main(["synth", "--help"]) == 0
    text = capsys.readouterr().out
    for word in ("s/mm²", "mm²/s", "syn", "sample-mean", "sample", "random-wm", "b=0"):
        assert word in text
