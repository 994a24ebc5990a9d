"""Tests of ``equidmri train --cohort`` and ``predict --cohort``: alone, and as 2 gloo processes under torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cli_inputs import run_main
from cohort_inputs import COHORT_SHAPE, write_cohort

import equidmri
from equidmri.recon.checkpoint import load_checkpoint
from equidmri.recon.cohort import SUBJECTS_DIR

pytestmark = pytest.mark.filterwarnings("ignore:SH degree lowered:UserWarning")

TINY = ["--epochs", "1", "--widths", "4", "4", "4", "4", "--patch-size", "4", "--threads", "1", "-q"]
SRC = Path(equidmri.__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
TORCHRUN_TIMEOUT = 300  # s: two processes start torch, prepare, train and predict a tiny cohort (~20 s measured)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return write_cohort(tmp_path_factory.mktemp("cohort"), n_subjects=3)


@pytest.fixture(scope="module")
def trained(cohort, tmp_path_factory) -> Path:
    """``train --cohort`` in this process, 1 epoch."""
    out = tmp_path_factory.mktemp("trained") / "out"
    assert run_main(["train", "--cohort", str(cohort), "--out", str(out), *TINY]) == 0
    return out


def _torchrun(argv: list[str], writes: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)]),
        "OMP_NUM_THREADS": "1",
        "EQUIDMRI_TEST_WRITES": str(writes),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.run(
        [*command, str(HERE / "torchrun_entry.py"), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=TORCHRUN_TIMEOUT,
        check=False,
    )


def test_train_help_states_units_and_torchrun(capsys):
    assert run_main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("--cohort FILE", "torchrun --nproc_per_node N", "s/mm²", "patches per optimiser step", "voxels"):
        assert phrase in text
    assert f"OUT/{SUBJECTS_DIR}/<subject>/" in text  # the help names the folder preparation writes


def test_train_writes_a_checkpoint_for_predict_and_a_record(trained, cohort):
    state = load_checkpoint(trained / "model.pt")
    assert state["epoch"] == 1 and state["meta"]["cohort"]["processes"] == 1
    assert state["meta"]["cohort"]["subjects"] == ["sub-01_dwi", "sub-02_dwi", "sub-03_dwi"]
    record = json.loads((trained / "run.json").read_text())
    assert record["method"] == "SHD-TV" and record["processes"] == 1 and record["epochs_trained"] == 1
    assert [s["mask_voxels"] for s in record["subjects"]] == [int(np.prod(COHORT_SHAPE))] * 3
    s0 = [s["responses"]["s0"][0] for s in record["subjects"]]
    assert s0 == pytest.approx([100.0, 120.0, 90.0], rel=1e-3)  # each subject its own WM response
    assert record["reference_responses"]["s0"][0] == pytest.approx(100.0, rel=1e-3)  # their median
    for name in ("sub-01_dwi", "sub-02_dwi", "sub-03_dwi"):
        assert (trained / "subjects" / name / "signal.npy").is_file()


def test_predict_cohort_writes_every_subject_and_skips_complete_ones(trained, cohort, tmp_path, capsys):
    out = tmp_path / "pred"
    argv = ["predict", "--cohort", str(cohort), "--model", str(trained / "model.pt"), "--out", str(out)]
    assert run_main([*argv, "--threads", "1", "-q"]) == 0
    for name in ("sub-01_dwi", "sub-02_dwi", "sub-03_dwi"):
        assert nib.load(out / name / "fod.nii.gz").shape == (*COHORT_SHAPE, 45)
        assert json.loads((out / name / "run.json").read_text())["final_loss"] is None
    assert "wrote 3 subject(s)" in capsys.readouterr().out
    (out / "sub-02_dwi" / "run.json").unlink()  # as if interrupted while writing sub-02
    assert run_main([*argv, "--threads", "1", "-q"]) == 0
    second = capsys.readouterr().out
    assert "wrote 1 subject(s) into" in second and "skipped 2 complete one(s)" in second


def test_resume_continues_the_cohort_training(trained, cohort, tmp_path):
    out = tmp_path / "resumed"
    assert run_main(["train", "--cohort", str(cohort), "--out", str(out), *TINY]) == 0
    resumed = [a if a != "1" else "2" for a in TINY]  # --epochs 2
    assert run_main(["train", "--cohort", str(cohort), "--out", str(out), "--resume", *resumed]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["epochs_trained"] == 2
    assert record["history"][0] == json.loads((trained / "run.json").read_text())["history"][0]


@pytest.mark.parametrize("problem", ["missing file", "mixed shells"])
def test_bad_cohort_is_refused_in_one_line_before_anything_is_written(problem, tmp_path, capsys):
    if problem == "missing file":
        listing = write_cohort(tmp_path / "cohort", n_subjects=2)
        (tmp_path / "cohort" / "sub-02" / "bvecs").unlink()
        expected = "cohort subject 'sub-02_dwi': bvecs file not found"
    else:
        listing = write_cohort(tmp_path / "cohort", n_subjects=2, bvalues=(1000.0, 2000.0))
        expected = "cohort subject 'sub-02_dwi' has the shells [2000.0] s/mm², subject 'sub-01_dwi' [1000.0] s/mm²"
    out = tmp_path / "out"
    assert run_main(["train", "--cohort", str(listing), "--out", str(out), *TINY]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"equidmri train: error: {expected}")
    assert not out.exists()


def test_predict_cohort_refuses_a_model_of_other_shells(trained, tmp_path, capsys):
    listing = write_cohort(tmp_path / "cohort", n_subjects=1, bvalues=(2000.0,))
    out = tmp_path / "out"
    argv = ["predict", "--cohort", str(listing), "--model", str(trained / "model.pt"), "--out", str(out), "-q"]
    assert run_main(argv) == 2
    assert "differ from the model's [1000.0] s/mm²" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_two_gloo_processes_train_then_predict_the_cohort(cohort, tmp_path):
    out, writes = tmp_path / "out", tmp_path / "writes"
    done = _torchrun(["train", "--cohort", str(cohort), "--out", str(out), *TINY], writes)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "with 2 process(es)" in done.stdout
    assert Path(f"{writes}.0").read_text().splitlines() == [str(out / "model.pt")]  # rank 0 wrote it, once
    assert not Path(f"{writes}.1").exists()  # rank 1 wrote no checkpoint
    state = load_checkpoint(out / "model.pt")
    assert state["meta"]["cohort"]["processes"] == 2 and state["epoch"] == 1
    assert json.loads((out / "run.json").read_text())["processes"] == 2
    predicted = tmp_path / "pred"
    argv = ["predict", "--cohort", str(cohort), "--model", str(out / "model.pt"), "--out", str(predicted)]
    done = _torchrun([*argv, "--threads", "1", "-q"], writes)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(process 1 of 2)" in done.stdout and "(process 2 of 2)" in done.stdout
    for name in ("sub-01_dwi", "sub-02_dwi", "sub-03_dwi"):
        assert (predicted / name / "run.json").is_file() and (predicted / name / "fod.nii.gz").is_file()
