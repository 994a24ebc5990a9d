"""FODFFit: dipy-style accessors of a deconvolution result."""

import numpy as np
from dipy.data import default_sphere

from equidmri.recon.model import FODFFit
from equidmri.sphere.sh import sh_matrix

FIBRE = np.array([0.0, 0.6, 0.8])  # unit vector, voxel-axis frame


def _fit():
    """A 2x1x1 volume: a truncated delta along FIBRE (lmax 18) in voxel 0, nothing in voxel 1."""
    coeffs = sh_matrix(FIBRE[None], 18, "descoteaux07")[0]
    fodf_sh = np.stack([coeffs, np.zeros_like(coeffs)]).reshape(2, 1, 1, -1).astype(np.float32)
    mask = np.array([True, False]).reshape(2, 1, 1)
    return FODFFit(fodf_sh=fodf_sh, fractions=np.ones((2, 1, 1, 1), np.float32), tissues=("wm",), mask=mask)


def test_shm_coeff_is_the_lmax8_part_and_sh_truncates():
    fit = _fit()
    np.testing.assert_array_equal(fit.shm_coeff, fit.fodf_sh[..., :45])
    assert fit.sh(4).shape == (2, 1, 1, 15)


def test_odf_evaluates_the_sh_on_a_dipy_sphere():
    fit = _fit()
    expected = fit.fodf_sh[0, 0, 0] @ sh_matrix(default_sphere.vertices, 18, "descoteaux07").T
    np.testing.assert_allclose(fit.odf(default_sphere)[0, 0, 0], expected, rtol=1e-5, atol=1e-5)
    assert default_sphere.vertices[fit.odf(default_sphere)[0, 0, 0].argmax()] @ FIBRE > np.cos(np.radians(5))


def test_peaks_find_the_fibre_inside_the_mask_only():
    dirs, values = _fit().peaks()
    assert abs(dirs[0, 0, 0, 0] @ FIBRE) > np.cos(np.radians(3))
    assert values[0, 0, 0, 0] > 0 and np.all(dirs[1] == 0) and np.all(values[1] == 0)
