"""``equidmri deconv --method`` and ``equidmri methods``: any registered method, the same outputs."""

import json

import nibabel as nib
import numpy as np
import pytest
from cli_inputs import TINY_NET, run_main

from equidmri.data import real_volume_paths
from equidmri.methods import METHODS

COMMON_FILES = {
    "fod.nii.gz",
    "peaks.nii.gz",
    "peak_values.nii.gz",
    "fractions.nii.gz",
    "response.json",
    "qc.png",
    "run.json",
}


def _deconv_small_64d(out, method: str, *extra: str) -> int:
    dwi, bvals, bvecs = real_volume_paths("small_64D")
    argv = ["deconv", "--dwi", str(dwi), "--bvals", str(bvals), "--bvecs", str(bvecs), "--out", str(out)]
    return run_main([*argv, "--method", method, *extra])


@pytest.fixture(scope="module")
def small_64d_runs(tmp_path_factory):
    """``deconv`` on dipy's small_64D with dipy's CSD and with SHD-TV (2 epochs, tiny network)."""
    runs = {}
    for method, extra in (("CSD (lmax 8)", []), ("shd-tv", TINY_NET)):
        runs[method] = tmp_path_factory.mktemp("deconv_method") / "out"
        assert _deconv_small_64d(runs[method], method, *extra) == 0
    return runs


def test_csd_and_shd_tv_write_the_same_files_and_the_network_its_checkpoint(small_64d_runs):
    csd, shd_tv = (sorted(p.name for p in small_64d_runs[m].iterdir()) for m in ("CSD (lmax 8)", "shd-tv"))
    assert set(csd) == COMMON_FILES
    assert set(shd_tv) == COMMON_FILES | {"model.pt"}


def test_outputs_of_both_methods_have_the_same_layout_and_name_their_method(small_64d_runs):
    for method, name in (("CSD (lmax 8)", "CSD (lmax 8)"), ("shd-tv", "SHD-TV")):
        out = small_64d_runs[method]
        record = json.loads((out / "run.json").read_text())
        assert record["method"] == name
        assert nib.load(out / "fod.nii.gz").shape == (10, 10, 10, 45)
        assert nib.load(out / "peaks.nii.gz").shape[:3] == (10, 10, 10)
    csd = json.loads((small_64d_runs["CSD (lmax 8)"] / "run.json").read_text())
    assert csd["network"] is None and csd["history"] == [] and csd["arguments"]["method"] == "CSD (lmax 8)"


def test_csd_peaks_are_unit_vectors_in_the_mask(small_64d_runs):
    peaks = np.asarray(nib.load(small_64d_runs["CSD (lmax 8)"] / "peaks.nii.gz").dataobj).reshape(10, 10, 10, -1, 3)
    norms = np.linalg.norm(peaks[..., 0, :], axis=-1)
    assert np.sum(norms > 0) > 900  # the 1000-voxel computed mask (no background), a few voxels without a peak
    np.testing.assert_allclose(norms[norms > 0], 1.0, atol=1e-5)


def test_resume_is_refused_for_an_iterative_method(small_64d_runs, capsys):
    assert _deconv_small_64d(small_64d_runs["CSD (lmax 8)"], "CSD (lmax 8)", "--resume") == 2
    assert "CSD (lmax 8) is not a learned method" in capsys.readouterr().err


def test_methods_lists_every_registered_method_one_line_each(capsys):
    assert run_main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(METHODS)
    assert [line.split("  ")[0].strip() for line in lines] == [m.name for m in METHODS]
    assert any(line.startswith("SHD-TV") and "(default)" in line for line in lines)
