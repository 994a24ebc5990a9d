"""Tests of ``equidmri harmonize train`` and ``apply``: two tiny phantom cohorts on disk, in process."""

import json

import numpy as np
import pytest

from equidmri.cli.main import main
from equidmri.data import read_cohort
from equidmri.dmri.io import load_dwi, save_fsl_gradients, save_nifti
from equidmri.harmonize import get_harmonizer
from equidmri.sims.scanners import ScannerParams, phantom_pair

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])  # 2 mm voxels
SCANNER_A = ScannerParams(directions=15, direction_seed=1, snr=30.0)
SCANNER_B = ScannerParams(directions=20, direction_seed=2, shell_gain=(1.1, 1.2, 1.3), snr=30.0)


def write_site(folder, scans):
    """One NIfTI + FSL gradients + mask per scan, and the cohort list; returns the list's path."""
    folder.mkdir()
    rows = ["subject\tdwi\tbvals\tbvecs\tmask"]
    for name, scan in scans:
        save_nifti(folder / f"{name}.nii.gz", scan.dwi, AFFINE)
        save_nifti(folder / f"{name}_mask.nii.gz", scan.mask.astype(np.uint8), AFFINE)
        save_fsl_gradients(folder / f"{name}.bval", folder / f"{name}.bvec", scan.bvals, scan.bvecs, AFFINE)
        rows.append(f"{name}\t{name}.nii.gz\t{name}.bval\t{name}.bvec\t{name}_mask.nii.gz")
    (folder / "cohort.tsv").write_text("\n".join(rows) + "\n")
    return folder / "cohort.tsv"


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    root = tmp_path_factory.mktemp("sites")
    pairs = [phantom_pair(seed, 8, SCANNER_A, SCANNER_B) for seed in range(4)]
    target = write_site(root / "a", [(f"s{i}", p.a) for i, p in enumerate(pairs[:3])])
    reference = write_site(root / "b", [(f"s{i}", p.b) for i, p in enumerate(pairs[1:4], start=1)])  # other subjects
    return root, target, reference


@pytest.fixture(scope="module")
def trained(cohorts):
    root, target, reference = cohorts
    out = root / "model"
    argv = ["harmonize", "train", "--reference-site", str(reference), "--target-site", str(target)]
    assert main([*argv, "--method", "rish", "--out", str(out), "--threads", "1"]) == 0
    return out


def test_train_writes_the_model_and_run_json(trained):
    record = json.loads((trained / "run.json").read_text())
    assert record["method"] == "RISH" and record["subjects"] == {
        "target": ["s0", "s1", "s2"],
        "reference": ["s1", "s2", "s3"],
    }
    assert record["reference_bvals"] == [0, 1000, 2000, 3000] and (trained / "model.pt").is_file()


def test_apply_writes_what_the_library_computes_on_the_reference_protocol(cohorts, trained, tmp_path):
    root, target, reference = cohorts
    out = tmp_path / "harmonized.nii.gz"
    scan = root / "a" / "s0"
    inputs = ["--dwi", f"{scan}.nii.gz", "--bvals", f"{scan}.bval", "--bvecs", f"{scan}.bvec"]
    assert main(["harmonize", "apply", "--model", str(trained / "model.pt"), *inputs, "--out", str(out)]) == 0
    written = load_dwi(out, tmp_path / "harmonized.bval", tmp_path / "harmonized.bvec")
    scans = {site: [s.load() for s in read_cohort(path)] for site, path in (("a", target), ("b", reference))}
    harmonizer = get_harmonizer("RISH").fit_sites(scans["a"], scans["b"])
    expected = harmonizer.apply(scans["a"][0].dwi, scans["a"][0].gtab())
    np.testing.assert_allclose(written.dwi, expected.dwi, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(written.bvals, scans["b"][0].bvals)
    np.testing.assert_allclose(written.bvecs, scans["b"][0].bvecs, atol=1e-6)  # voxel frame, read back from FSL
    assert main(["harmonize", "apply", "--model", str(trained / "model.pt"), *inputs, "--out", str(out)]) == 2


def test_a_target_shell_the_reference_lacks_is_refused_before_anything_is_written(cohorts, tmp_path, capsys):
    root, _, reference = cohorts
    other = phantom_pair(
        9, 8, ScannerParams(shells=(1500.0,), shell_gain=(1.0,), b_scale=(1.0,), directions=15), SCANNER_B
    )
    target = write_site(tmp_path / "odd", [("x", other.a)])
    argv = ["harmonize", "train", "--reference-site", str(reference), "--target-site", str(target)]
    assert main([*argv, "--out", str(tmp_path / "model")]) == 2
    assert "shell b=1500 s/mm² is not in the reference protocol" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


def test_missing_cohort_and_bad_output_name_are_one_line_errors(cohorts, trained, tmp_path, capsys):
    _, target, _ = cohorts
    argv = ["harmonize", "train", "--reference-site", str(tmp_path / "none.tsv"), "--target-site", str(target)]
    assert main([*argv, "--out", str(tmp_path / "m")]) == 2 and not (tmp_path / "m").exists()
    scan = target.parent / "s0"
    inputs = ["--dwi", f"{scan}.nii.gz", "--bvals", f"{scan}.bval", "--bvecs", f"{scan}.bvec"]
    assert (
        main(["harmonize", "apply", "--model", str(trained / "model.pt"), *inputs, "--out", str(tmp_path / "h.txt")])
        == 2
    )
    assert "--out must end in .nii or .nii.gz" in capsys.readouterr().err


def test_the_cyclic_network_trains_on_the_paired_subjects_and_applies_as_the_library(
    cohorts, tmp_path, monkeypatch, capsys
):
    import equidmri.cli.common
    from equidmri.harmonize.model_file import load_harmonizer

    monkeypatch.setattr(equidmri.cli.common, "show_progress", lambda args: True)  # as on a terminal
    root, target, reference = cohorts
    argv = ["harmonize", "train", "--reference-site", str(reference), "--target-site", str(target), "--threads", "1"]
    out = tmp_path / "cyclic"
    assert main([*argv, "--method", "cyclic", "--paired", "s1", "s2", "--steps", "2", "--out", str(out)]) == 0
    assert "training CyclicHarmonizer" in capsys.readouterr().err  # the progress bar over the training steps
    record = json.loads((out / "run.json").read_text())
    assert record["method"] == "cyclic" and record["paired"] == ["s1", "s2"]
    _, model = load_harmonizer(out / "model.pt")
    assert model.steps == 2 and model.paired_indices == [1, 2]  # s1, s2 of the target cohort s0, s1, s2
    scan = root / "a" / "s0"
    inputs = ["--dwi", f"{scan}.nii.gz", "--bvals", f"{scan}.bval", "--bvecs", f"{scan}.bvec"]
    harmonized = tmp_path / "h.nii.gz"
    assert main(["harmonize", "apply", "--model", str(out / "model.pt"), *inputs, "--out", str(harmonized)]) == 0
    data = read_cohort(target)[0].load()
    expected = model.apply(data.dwi, data.gtab()).dwi
    np.testing.assert_allclose(load_dwi(harmonized, tmp_path / "h.bval", tmp_path / "h.bvec").dwi, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--method", "SH-ResNet"], "SH-ResNet is supervised: name the subjects scanned on both sites with --paired"),
        (["--method", "cyclic", "--paired", "s0"], "--paired subject 's0' is not in both cohorts"),
        (["--method", "RISH", "--paired", "s1"], "--paired: RISH does not use paired scans"),
        (["--method", "RISH", "--steps", "3"], "--steps: RISH is not a learned method"),
    ],
)
def test_pairing_and_training_options_are_checked_before_anything_is_written(
    cohorts, tmp_path, capsys, options, message
):
    _, target, reference = cohorts
    argv = ["harmonize", "train", "--reference-site", str(reference), "--target-site", str(target)]
    assert main([*argv, *options, "--out", str(tmp_path / "m")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "m").exists()
