"""End to end on real data: ``equidmri demo --train-from-scratch`` on dipy's bundled small_64D (10x10x10, b=1000,
64 directions): the per-volume training path (the shipped model's demo is in test_demo.py).

CSD is not ground truth, but a working deconvolution must broadly agree with it on real data: the issue
asks for at least 60% of white-matter voxels (FA > 0.4) with a main peak within 25 degrees of CSD's.
"""

import json

import nibabel as nib
import numpy as np
import pytest
from cli_inputs import run_main
from dipy.data import get_fnames
from dipy.reconst.shm import real_sh_tournier

from equidmri.sphere.healpix import pixel_centres

EPOCHS = 10  # measured at 84844d8 (the b=0 volumes out of the WM-only refinement): 97.5% of 405 voxels after 10
# epochs and after 40; before it, with the b=0 volumes fitted, 66.7% after 60 epochs and 56.3% after 30
MIN_AGREEMENT = 0.60  # the threshold
# negative / positive mass of the lmax-8 fODF on 3072 directions: dipy CSD's on this volume is 0.057; the refined
# fODF (non-negativity a penalty in SH space) may reach 2x that (with the loss's own weight 0.1: 0.155)
NEGATIVE_MASS = 0.115


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    assert run_main(["demo", "--out", str(out), "--train-from-scratch", "--epochs", str(EPOCHS), "-q"]) == 0
    return out


def test_demo_agrees_with_csd_on_white_matter(demo_dir):
    summary = json.loads((demo_dir / "demo.json").read_text())
    assert summary["n_voxels"] > 350  # 405 voxels with FA > 0.4 in the computed mask (every voxel)
    assert summary["fraction_within_cone"] >= MIN_AGREEMENT
    assert summary["median_angle_deg"] < 25.0


def test_outputs_have_the_input_grid_and_mrtrix_layout(demo_dir):
    source = nib.load(get_fnames(name="small_64D")[0])
    expected = {"fod.nii.gz": 45, "peaks.nii.gz": 9, "peak_values.nii.gz": 3, "fractions.nii.gz": 1}
    for name, volumes in expected.items():
        img = nib.load(demo_dir / name)
        assert img.shape == (10, 10, 10, volumes), name
        np.testing.assert_allclose(img.affine, source.affine, atol=1e-4)
    peaks = nib.load(demo_dir / "peaks.nii.gz").get_fdata().reshape(10, 10, 10, 3, 3)
    norms = np.linalg.norm(peaks, axis=-1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))
    run = json.loads((demo_dir / "run.json").read_text())
    assert run["epochs_trained"] == EPOCHS and run["data_shape"] == [10, 10, 10, 65]


def test_fodfs_are_essentially_non_negative(demo_dir):
    sh = nib.load(demo_dir / "fod.nii.gz").get_fdata()
    mask = np.abs(sh).sum(-1) > 0
    directions = pixel_centres(16)
    theta, phi = np.arccos(directions[:, 2]), np.arctan2(directions[:, 1], directions[:, 0])
    basis, _, _ = real_sh_tournier(8, theta, phi, legacy=False)
    values = sh[mask] @ basis.T
    negative, positive = -values.clip(max=0).sum(), values.clip(min=0).sum()
    assert negative / positive < NEGATIVE_MASS, negative / positive
    assert values.max(axis=1).min() > 0  # every voxel has a positive lobe
