"""Tests of equidmri.dmri.mask: median_otsu brain mask on the DW volumes."""

import numpy as np
import pytest
from dipy.data import get_fnames

from equidmri.dmri.io import load_dwi
from equidmri.dmri.mask import compute_mask

SMALL_64D_MASK_VOXELS = 303  # median_otsu, DW volumes, median_radius 2, numpass 1 (measured)


@pytest.fixture(scope="module")
def small_64d():
    return load_dwi(*get_fnames(name="small_64D"))


def test_small_64d_mask_has_303_voxels(small_64d):
    mask = compute_mask(small_64d.dwi, small_64d.gtab(), small_64d.valid)
    assert mask.dtype == bool and mask.shape == (10, 10, 10)
    assert np.count_nonzero(mask) == SMALL_64D_MASK_VOXELS


def test_mask_excludes_invalid_voxels(small_64d):
    full = compute_mask(small_64d.dwi, small_64d.gtab())
    inside = np.argwhere(full)[:5]
    valid = np.ones(full.shape, dtype=bool)
    valid[tuple(inside.T)] = False
    valid[0, 0, 0] = False  # outside the brain: changes nothing
    mask = compute_mask(small_64d.dwi, small_64d.gtab(), valid)
    assert np.count_nonzero(mask) == SMALL_64D_MASK_VOXELS - 5
    np.testing.assert_array_equal(mask, full & valid)


def test_mask_settings_change_the_result(small_64d):
    wider = compute_mask(small_64d.dwi, small_64d.gtab(), median_radius=4, numpass=4)  # dipy's defaults
    assert np.count_nonzero(wider) != SMALL_64D_MASK_VOXELS


def test_compute_mask_rejects_bad_input(small_64d):
    gtab = small_64d.gtab()
    with pytest.raises(ValueError, match=r"dwi must have shape \(X, Y, Z, N\), got \(10, 10, 10\)"):
        compute_mask(small_64d.dwi[..., 0], gtab)
    with pytest.raises(ValueError, match="dwi has 64 volumes but the gradient table has 65"):
        compute_mask(small_64d.dwi[..., 1:], gtab)
    with pytest.raises(ValueError, match=r"valid must have shape \(10, 10, 10\), got \(10, 10\)"):
        compute_mask(small_64d.dwi, gtab, np.ones((10, 10), dtype=bool))
    with pytest.raises(ValueError, match="median_radius and numpass must be >= 1, got 0 and 1"):
        compute_mask(small_64d.dwi, gtab, median_radius=0)
