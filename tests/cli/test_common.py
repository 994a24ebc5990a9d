"""Tests of equidmri.cli.common: option defaults come from the library, outputs are checked first."""

import argparse
import io
import sys

import pytest

from equidmri.cli.common import check_out_dir, chosen_method, learned_options, show_progress
from equidmri.cli.main import build_parser
from equidmri.methods import get_method
from equidmri.recon.losses import LossWeights
from equidmri.recon.model import NetworkConfig
from equidmri.recon.train import TrainConfig

REQUIRED = ["--dwi", "d.nii.gz", "--bvals", "b", "--bvecs", "v", "--out", "o"]


def _parse(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["deconv", *REQUIRED, *extra])


def _learned(args: argparse.Namespace):
    method = chosen_method(args)
    return get_method(method.name, None, **learned_options(args, method))


def test_default_options_build_the_library_defaults():
    method = _learned(_parse())
    assert method.train_config == TrainConfig()
    assert method.network_config == NetworkConfig()


@pytest.mark.parametrize(
    ("extra", "expected_tv"),
    [
        ((), LossWeights().tv),
        (("--method", "shd"), 0.0),
        (("--method", "SHD", "--lambda-tv", "0.25"), 0.25),
        (("--method", "rt-esd"), 0.0),
        (("--method", "cnn-tv"), LossWeights().tv),
        (("--model", "cnn"), 0.0),  # the deprecated alias
    ],
)
def test_lambda_tv_default_is_the_methods_own(extra, expected_tv):
    assert _learned(_parse(*extra)).train_config.weights.tv == expected_tv


def test_method_names_are_case_insensitive_and_csd_takes_any_lmax():
    assert _parse("--method", "shd-tv").method == "SHD-TV"
    assert _parse("--method", "csd (lmax 10)").method == "CSD (lmax 10)"
    assert _parse("--model", "rt-esd").model == "RT-ESD"


@pytest.mark.parametrize(
    "option",
    [
        ["--epochs", "0"],
        ["--lr", "0"],
        ["--lambda-nn", "-1"],
        ["--relative-peak-threshold", "1.5"],
        ["--min-separation-angle", "91"],
        ["--npeaks", "0"],
        ["--refine-tv", "-1e-4"],
        ["--threads", "0"],
        ["--model", "csd"],
        ["--method", "NoSuchMethod"],
    ],
)
def test_out_of_range_option_is_a_usage_error(option, capsys):
    with pytest.raises(SystemExit) as stop:
        _parse(*option)
    assert stop.value.code == 2
    assert f"argument {option[0]}" in capsys.readouterr().err


def test_check_out_dir_refuses_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(FileExistsError, match="is not a directory"):
        check_out_dir(path, force=True)


def test_check_out_dir_accepts_an_empty_directory(tmp_path):
    check_out_dir(tmp_path, force=False)


def test_check_out_dir_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="--resume needs"):
        check_out_dir(tmp_path, force=False, resume=True)


def test_the_deprecated_model_option_warns_and_chooses_the_method(caplog):
    with caplog.at_level("WARNING", logger="equidmri"):
        assert chosen_method(_parse("--model", "rt-esd")).name == "RT-ESD"
    assert "--model is deprecated; use --method RT-ESD" in caplog.text


@pytest.mark.parametrize("quiet", [False, True])
def test_no_progress_bars_when_stderr_is_not_a_terminal(quiet, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a file, as under a batch system
    assert show_progress(argparse.Namespace(quiet=quiet)) is False


def test_qc_figure_gets_the_fraction_maps_of_a_multi_tissue_fit():
    import numpy as np

    from equidmri.cli.common import multi_tissue_maps
    from equidmri.recon.model import FODFFit

    mask = np.ones((2, 1, 1), bool)
    sh = np.zeros((2, 1, 1, 45), np.float32)
    three = FODFFit(sh, np.ones((2, 1, 1, 3), np.float32), ("wm", "gm", "csf"), mask)
    assert multi_tissue_maps(three)["tissues"] == ("wm", "gm", "csf")
    assert multi_tissue_maps(three)["fractions"] is three.fractions
    assert multi_tissue_maps(FODFFit(sh, np.ones((2, 1, 1, 1), np.float32), ("wm",), mask)) == {}
