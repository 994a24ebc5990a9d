"""Tests of equidmri.cli.common: option defaults come from the library, outputs are checked first."""

import argparse
import io
import sys

import pytest

from equidmri.cli.common import SHD_LAMBDA_TV, check_out_dir, network_config, show_progress, train_config
from equidmri.cli.main import build_parser
from equidmri.recon.losses import LossWeights
from equidmri.recon.model import NetworkConfig
from equidmri.recon.train import TrainConfig

REQUIRED = ["--dwi", "d.nii.gz", "--bvals", "b", "--bvecs", "v", "--out", "o"]


def _parse(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["deconv", *REQUIRED, *extra])


def test_default_options_build_the_library_defaults():
    args = _parse()
    assert train_config(args, args.model) == TrainConfig()
    assert network_config(args) == NetworkConfig()


@pytest.mark.parametrize(("extra", "expected_tv"), [
    ((), LossWeights().tv),
    (("--model", "shd"), SHD_LAMBDA_TV),
    (("--model", "shd", "--lambda-tv", "0.25"), 0.25),
    (("--model", "rt-esd"), SHD_LAMBDA_TV),
    (("--model", "cnn"), SHD_LAMBDA_TV),
])
def test_lambda_tv_default_depends_on_the_model(extra, expected_tv):
    args = _parse(*extra)
    assert train_config(args, args.model).weights.tv == expected_tv


@pytest.mark.parametrize("option", [
    ["--epochs", "0"], ["--lr", "0"], ["--lambda-nn", "-1"], ["--relative-peak-threshold", "1.5"],
    ["--min-separation-angle", "91"], ["--npeaks", "0"], ["--threads", "0"], ["--model", "csd"],
])
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


@pytest.mark.parametrize("quiet", [False, True])
def test_no_progress_bars_when_stderr_is_not_a_terminal(quiet, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a file, as under a batch system
    assert show_progress(argparse.Namespace(quiet=quiet)) is False
