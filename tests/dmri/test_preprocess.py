"""Tests of equidmri.dmri.preprocess: per-shell SH interpolation of the DWI onto the network grid."""

import math

import numpy as np
import pytest
from scipy.special import eval_legendre

from equidmri.dmri.gradients import Shells, find_shells
from equidmri.dmri.preprocess import SphereSampler, build_sampler
from equidmri.dmri.response import TissueResponses
from equidmri.sphere import hemisphere

WM_EVALS = (1.7e-3, 3e-4, 3e-4)  # mm²/s, FA 0.7990 (STYLE.md §6)
FIBRE = np.array([1.0, 2.0, 2.0]) / 3.0


def _scheme(counts=(64,), bvals=(1000.0,), seed=0):
    """b=0, the first shell, b=0, further shells: random unit directions (voxel-axis frame)."""
    rng = np.random.default_rng(seed)
    rows_bvals, rows_bvecs = [0.0], [np.zeros(3)]
    for i, (n, b) in enumerate(zip(counts, bvals)):
        g = rng.normal(size=(n, 3))
        rows_bvecs.extend(g / np.linalg.norm(g, axis=1, keepdims=True))
        rows_bvals.extend([b] * n)
        if i == 0:
            rows_bvals.append(0.0)
            rows_bvecs.append(np.zeros(3))
    return np.array(rows_bvals), np.array(rows_bvecs)


def _fibre_signal(directions):
    """Single-fibre WM signal at b=1000 truncated to lmax 8: sum_l r_l0 sqrt((2l+1)/4pi) P_l(g.w), band-limited."""
    zonal = TissueResponses(("wm",), [1000.0], [[WM_EVALS]], [1.0]).zonal(8)[0, 1]
    cosine = directions @ FIBRE
    return sum(zonal[j] * math.sqrt((4 * j + 1) / (4 * math.pi)) * eval_legendre(2 * j, cosine) for j in range(5))


def test_channel_zero_is_the_mean_b0():
    bvals, bvecs = _scheme()
    sampler = build_sampler(bvecs, find_shells(bvals), hemisphere.hemisphere_centres(4))
    dwi = np.random.rand(bvals.size)
    dwi[bvals == 0] = [2.0, 4.0]
    np.testing.assert_allclose(sampler.operator[0] @ dwi, np.full(96, 3.0), atol=1e-14, rtol=0)


def test_a_constant_shell_signal_is_reproduced_exactly():
    bvals, bvecs = _scheme()
    sampler = build_sampler(bvecs, find_shells(bvals), hemisphere.hemisphere_centres(8))
    dwi = np.where(bvals > 0, 0.37, 1.0)  # l = 0 is not penalised by the Laplace-Beltrami term
    np.testing.assert_allclose(sampler.operator[1] @ dwi, np.full(384, 0.37), atol=1e-12, rtol=0)


def test_a_band_limited_fibre_signal_is_interpolated_onto_v_plus():
    """64 random directions at b = 1000, plain least squares (no Laplace-Beltrami smoothing).

    A band-limited (lmax 8) fibre signal is reproduced exactly on V+ (float64 algebra).
    """
    bvals, bvecs = _scheme()
    vertices = hemisphere.hemisphere_centres(8)
    sampler = build_sampler(bvecs, find_shells(bvals), vertices)
    dwi = np.where(bvals > 0, _fibre_signal(bvecs), 1.0)
    truth = _fibre_signal(vertices)
    error = np.abs(sampler.operator[1] @ dwi - truth).max() / np.abs(truth).max()
    assert error < 1e-10


def test_each_shell_channel_reads_only_its_own_volumes():
    bvals, bvecs = _scheme(counts=(30, 30), bvals=(1000.0, 2000.0))
    shells = find_shells(bvals)
    with pytest.warns(UserWarning):
        sampler = build_sampler(bvecs, shells, hemisphere.hemisphere_centres(2))
    assert sampler.n_channels == 3
    for s in range(2):
        np.testing.assert_array_equal(sampler.operator[1 + s][:, shells.index != s], 0.0)
    np.testing.assert_array_equal(sampler.operator[0][:, shells.index >= 0], 0.0)


def test_a_shell_with_few_directions_lowers_its_lmax_with_a_warning():
    bvals, bvecs = _scheme(counts=(20, 64), bvals=(1000.0, 2000.0))
    message = r"SH degree lowered from 8 on 1 of 2 shell\(s\) with too few directions: b=1000 \(20 directions, deg"
    with pytest.warns(UserWarning, match=message) as record:
        sampler = build_sampler(bvecs, find_shells(bvals), hemisphere.hemisphere_centres(4))
    assert len(record) == 1 and record[0].filename == __file__  # stacklevel points at the caller
    assert sampler.shell_lmax == (4, 8)
    # a degree-4 fit still reproduces a constant exactly
    dwi = np.where(bvals > 0, 0.5, 1.0)
    np.testing.assert_allclose(sampler.operator[1] @ dwi, np.full(96, 0.5), atol=1e-12, rtol=0)


def test_many_lowered_shells_give_one_warning_that_counts_them():
    counts, bvals_list = (12,) * 8, tuple(1000.0 + 300.0 * k for k in range(8))  # 12 directions support degree 2
    bvals, bvecs = _scheme(counts=counts, bvals=bvals_list)
    with pytest.warns(UserWarning, match=r"on 8 of 8 shell\(s\).*b=2200 \(12 directions, degree 2\), \.\.\.") as record:
        sampler = build_sampler(bvecs, find_shells(bvals), hemisphere.hemisphere_centres(2))
    assert len(record) == 1
    assert "b=2500" not in str(record[0].message)  # five shells named, the others counted
    assert sampler.shell_lmax == (2,) * 8


def test_lmax_cap_limits_every_shell():
    bvals, bvecs = _scheme()
    sampler = build_sampler(bvecs, find_shells(bvals), hemisphere.hemisphere_centres(2), lmax_cap=4)
    assert sampler.shell_lmax == (4,)
    # a degree-4 sampler: the operator's rank on the shell is 15
    assert np.linalg.matrix_rank(sampler.operator[1]) == 15


def test_sampler_call_maps_a_volume_to_channels_first_float32():
    bvals, bvecs = _scheme()
    sampler = build_sampler(bvecs, find_shells(bvals), hemisphere.hemisphere_centres(2))
    dwi = np.random.rand(2, 3, 1, bvals.size)
    out = sampler(dwi)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, np.einsum("xyzn,cvn->cxyzv", dwi, sampler.operator), rtol=1e-5, atol=1e-6)


def test_build_sampler_rejects_mismatched_bvecs():
    bvals, bvecs = _scheme()
    with pytest.raises(ValueError, match=r"bvecs must have shape \(66, 3\), got \(66, 2\)"):
        build_sampler(bvecs[:, :2], find_shells(bvals), hemisphere.hemisphere_centres(2))


def test_build_sampler_needs_a_b0_volume():
    _, bvecs = _scheme()
    shells = Shells(bvals=np.array([1000.0]), index=np.zeros(66, dtype=np.int64))
    with pytest.raises(ValueError, match="no b=0 volume: the signal cannot be normalised"):
        build_sampler(bvecs, shells, hemisphere.hemisphere_centres(2))


@pytest.mark.parametrize("shape", [(2, 2, 66), (2, 2, 1, 65)])
def test_sampler_rejects_wrong_dwi_shapes(shape):
    sampler = SphereSampler(operator=np.zeros((2, 24, 66)), shell_lmax=(8,))
    with pytest.raises(ValueError, match=r"expected a \(X, Y, Z, 66\) DWI"):
        sampler(np.zeros(shape))
