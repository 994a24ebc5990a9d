"""Tests of equidmri.dmri.mask: median_otsu brain mask on the DW volumes, unless the volume has no background."""

import logging

import numpy as np
import pytest
from dipy.core.gradients import gradient_table
from dipy.data import get_sphere
from dipy.sims.voxel import multi_tensor

from equidmri.data import load_real_volume
from equidmri.dmri.mask import compute_mask, has_background, median_otsu_mask

PHANTOM_SHAPE = (18, 18, 14)  # voxels
PHANTOM_RADIUS = 6.0  # voxels: a ball of tissue in air
NOISE_SIGMA = 3.0  # scanner units: Rician noise on S0 = 100 (SNR 33), Rayleigh noise in the air
EVALS = np.array([1.7e-3, 0.3e-3, 0.3e-3])  # mm²/s, FA 0.80


@pytest.fixture(scope="module")
def small_64d():
    return load_real_volume("small_64D")


@pytest.fixture(scope="module")
def phantom_with_background():
    """A ball of single-fibre tissue (S0 = 100) in air, Rician noise everywhere; ``(dwi, gtab, ball)``."""
    dirs = get_sphere(name="repulsion100").vertices[:30]
    gtab = gradient_table(np.r_[0.0, np.full(30, 1000.0)], bvecs=np.vstack([np.zeros(3), dirs]))
    signal, _ = multi_tensor(gtab, EVALS[None], S0=100.0, angles=[(90, 0)], fractions=[100], snr=None)
    centre = (np.array(PHANTOM_SHAPE) - 1) / 2
    ball = np.linalg.norm(np.indices(PHANTOM_SHAPE).T - centre, axis=-1).T <= PHANTOM_RADIUS
    clean = np.where(ball[..., None], signal, 0.0)
    rng = np.random.default_rng(0)
    noisy = np.hypot(clean + rng.normal(0, NOISE_SIGMA, clean.shape), rng.normal(0, NOISE_SIGMA, clean.shape))
    return noisy.astype(np.float32), gtab, ball


def test_small_64d_median_otsu_mask_keeps_a_third_of_the_crop(small_64d, small_64d_otsu_voxels):
    mask = median_otsu_mask(small_64d.dwi, small_64d.gtab(), small_64d.valid)
    assert mask.dtype == bool and mask.shape == (10, 10, 10)
    assert np.count_nonzero(mask) == small_64d_otsu_voxels


@pytest.mark.parametrize("name", ["small_64D", "small_101D", "small_25"])
def test_a_crop_inside_the_brain_keeps_every_voxel(name, caplog):
    data = load_real_volume(name)
    gtab = data.gtab()
    assert not has_background(data.dwi[..., gtab.b0s_mask].mean(-1), data.valid)
    with caplog.at_level(logging.INFO, logger="equidmri.dmri.mask"):
        mask = compute_mask(data.dwi, gtab, data.valid)
    assert mask.all()
    assert median_otsu_mask(data.dwi, gtab, data.valid).sum() < mask.size  # what median_otsu would have dropped
    lines = [r.getMessage() for r in caplog.records if r.name == "equidmri.dmri.mask"]
    assert len(lines) == 1 and lines[0].startswith("no background on the faces of the volume")
    assert f"({mask.size} of {mask.size})" in lines[0]


def test_a_volume_with_background_still_loses_it(phantom_with_background):
    dwi, gtab, ball = phantom_with_background
    assert has_background(dwi[..., 0], None)
    mask = compute_mask(dwi, gtab)
    np.testing.assert_array_equal(mask, median_otsu_mask(dwi, gtab))
    assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()
    assert np.count_nonzero(mask & ~ball) <= 0.05 * np.count_nonzero(~ball)  # air left out
    # tissue kept: 723 of 912 ball voxels measured (median_otsu's radius-2 median filter erodes the rim)
    assert np.count_nonzero(mask & ball) >= 0.75 * np.count_nonzero(ball)


def test_no_background_mask_leaves_out_invalid_and_empty_voxels(small_64d):
    valid = np.ones((10, 10, 10), dtype=bool)
    valid[2, 3, 4] = False
    dwi = small_64d.dwi.copy()
    dwi[5, 5, 5] = 0.0  # no signal: cannot be normalised by its b=0
    mask = compute_mask(dwi, small_64d.gtab(), valid)
    assert np.count_nonzero(~mask) == 2 and not mask[2, 3, 4] and not mask[5, 5, 5]


def test_thin_volumes_have_no_border_and_keep_every_voxel(small_64d):
    assert not has_background(np.ones((2, 2, 2)))
    assert compute_mask(small_64d.dwi[:2, :2, :2], small_64d.gtab()).all()


def test_mask_excludes_invalid_voxels(small_64d, small_64d_otsu_voxels):
    full = median_otsu_mask(small_64d.dwi, small_64d.gtab())
    inside = np.argwhere(full)[:5]
    valid = np.ones(full.shape, dtype=bool)
    valid[tuple(inside.T)] = False
    valid[0, 0, 0] = False  # outside the brain: changes nothing
    mask = median_otsu_mask(small_64d.dwi, small_64d.gtab(), valid)
    assert np.count_nonzero(mask) == small_64d_otsu_voxels - 5
    np.testing.assert_array_equal(mask, full & valid)


def test_mask_settings_change_the_result(small_64d, small_64d_otsu_voxels):
    wider = median_otsu_mask(small_64d.dwi, small_64d.gtab(), median_radius=4, numpass=4)  # dipy's defaults
    assert np.count_nonzero(wider) != small_64d_otsu_voxels


@pytest.mark.parametrize("function", [compute_mask, median_otsu_mask])
def test_compute_mask_rejects_bad_input(small_64d, function):
    gtab = small_64d.gtab()
    with pytest.raises(ValueError, match=r"dwi must have shape \(X, Y, Z, N\), got \(10, 10, 10\)"):
        function(small_64d.dwi[..., 0], gtab)
    with pytest.raises(ValueError, match="dwi has 64 volumes but the gradient table has 65"):
        function(small_64d.dwi[..., 1:], gtab)
    with pytest.raises(ValueError, match=r"valid must have shape \(10, 10, 10\), got \(10, 10\)"):
        function(small_64d.dwi, gtab, np.ones((10, 10), dtype=bool))
    with pytest.raises(ValueError, match="median_radius and numpass must be >= 1, got 0 and 1"):
        function(small_64d.dwi, gtab, median_radius=0)
