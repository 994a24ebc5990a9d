"""``equidmri phantom`` and ``equidmri evaluate`` from the command line."""

import json

import numpy as np
import pytest
from cli_inputs import run_main

from equidmri.dmri.io import load_nifti_volume, save_nifti
from equidmri.sims.dataset import FILES, VOLUMES


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom") / "set"
    assert run_main(["phantom", "--out", str(out), "--size", "10", "--seed", "1"]) == 0
    return out


def test_phantom_writes_every_file(phantom_dir):
    assert all((phantom_dir / v / f).is_file() for v in VOLUMES for f in FILES)
    assert json.loads((phantom_dir / "run.json").read_text())["n_volumes"] == {"high": 274, "low": 33}


def test_phantom_refuses_existing_outputs_and_writes_nothing(phantom_dir, capsys):
    before = {p: p.stat().st_mtime_ns for p in phantom_dir.rglob("*")}
    assert run_main(["phantom", "--out", str(phantom_dir), "--size", "10"]) == 2
    assert "--force" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in phantom_dir.rglob("*")} == before


def test_evaluate_ground_truth_against_itself(phantom_dir, tmp_path):
    out = tmp_path / "scores.json"
    gt = phantom_dir / "test"
    assert (
        run_main(
            [
                "evaluate",
                "--gt",
                str(gt),
                "--pred-peaks",
                str(gt / "gt_peaks.nii.gz"),
                "--json",
                str(out),
                "--threshold",
                "0.5",
            ]
        )
        == 0
    )
    scores = json.loads(out.read_text())
    assert scores["at_threshold"]["f1"] == 1.0 and scores["at_threshold"]["angle_deg"] == pytest.approx(0, abs=1e-3)
    assert (
        run_main(["evaluate", "--gt", str(gt), "--pred-peaks", str(gt / "gt_peaks.nii.gz"), "--json", str(out)]) == 2
    )  # exists without --force


def test_evaluate_refuses_peaks_in_another_frame(phantom_dir, tmp_path):
    gt = phantom_dir / "test"
    data, affine = load_nifti_volume(gt / "gt_peaks.nii.gz")
    flipped = affine @ np.diag([-1.0, 1.0, 1.0, 1.0])
    save_nifti(tmp_path / "peaks.nii.gz", np.asarray(data), flipped)
    assert (
        run_main(
            [
                "evaluate",
                "--gt",
                str(gt),
                "--pred-peaks",
                str(tmp_path / "peaks.nii.gz"),
                "--json",
                str(tmp_path / "s.json"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "s.json").exists()
