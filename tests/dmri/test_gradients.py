"""Tests of equidmri.dmri.gradients: validated gradient tables, shells, SH degree per shell."""

import numpy as np
import pytest
from dipy.data import get_fnames
from dipy.io.gradients import read_bvals_bvecs

from equidmri.dmri.gradients import (
    B0_THRESHOLD,
    Shells,
    check_gradients,
    find_shells,
    make_gtab,
    max_sh_order,
)


def _scheme(n_dw=6, seed=0):
    rng = np.random.default_rng(seed)
    bvecs = rng.normal(size=(n_dw + 1, 3))
    bvecs /= np.linalg.norm(bvecs, axis=1, keepdims=True)
    bvals = np.r_[0.0, np.full(n_dw, 1000.0)]
    return bvals, bvecs


def test_make_gtab_zeroes_b0_rows_and_keeps_unit_vectors():
    bvals, bvecs = _scheme()
    bvecs[0] = [0.3, np.nan, 7.0]  # anything on a b=0 row is ignored (small_64D has NaN there)
    bvecs[1] *= 1.005  # within BVEC_ATOL: renormalised
    gtab = make_gtab(bvals, bvecs)
    np.testing.assert_array_equal(gtab.b0s_mask, [True] + [False] * 6)
    np.testing.assert_array_equal(gtab.bvecs[0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(np.linalg.norm(gtab.bvecs[1:], axis=1), 1.0, atol=1e-15)
    np.testing.assert_allclose(gtab.bvecs[1], bvecs[1] / 1.005, atol=1e-15)
    assert gtab.b0_threshold == B0_THRESHOLD


def test_b0_threshold_is_inclusive():
    bvals, bvecs = _scheme()
    bvals[1], bvals[2] = 50.0, 51.0
    bvals_out, bvecs_out = check_gradients(bvals, bvecs)
    np.testing.assert_array_equal(bvecs_out[1], 0.0)  # b = 50 is a b=0 volume
    np.testing.assert_allclose(bvecs_out[2], bvecs[2])  # b = 51 is diffusion-weighted
    np.testing.assert_array_equal(bvals_out, bvals)


def test_check_gradients_does_not_modify_inputs():
    bvals, bvecs = _scheme()
    before = bvecs.copy()
    check_gradients(bvals, bvecs)
    np.testing.assert_array_equal(bvecs, before)


@pytest.mark.parametrize(
    ("bvals", "bvecs", "match"),
    [
        (np.zeros((2, 4)), np.zeros((8, 3)), r"bvals must have shape \(N,\), got \(2, 4\)"),
        (np.r_[0.0, 1000, 1000], np.zeros((3, 2)), r"bvecs must have shape \(N, 3\) = \(3, 3\), got \(3, 2\)"),
        (np.r_[0.0, np.inf, 1000], np.eye(3), r"bvals must be finite, got non-finite values at volumes \[1\]"),
        (np.r_[0.0, -5.0, 1000], np.eye(3), r"bvals must be >= 0 s/mm², got \[-5.0\] at volumes \[1\]"),
        (np.r_[100.0, 1000, 1000], np.eye(3), r"no b=0 volume \(b <= 50.0 s/mm²\) found; b-values range 100.0..1000.0"),
        (np.r_[0.0, 10, 50], np.eye(3), r"no diffusion-weighted volume \(b > 50.0 s/mm²\) found among 3 volumes"),
    ],
)
def test_check_gradients_rejects_bad_schemes(bvals, bvecs, match):
    with pytest.raises(ValueError, match=match):
        make_gtab(bvals, bvecs)


def test_transposed_bvecs_are_refused():
    bvals, bvecs = _scheme(n_dw=5)
    with pytest.raises(ValueError, match=r"bvecs must have shape \(N, 3\) = \(6, 3\), got \(3, 6\)"):
        make_gtab(bvals, bvecs.T)


def test_non_unit_bvecs_are_listed_with_norms():
    bvals, bvecs = _scheme()
    bvecs[3] *= 0.9
    bvecs[5] = [np.nan, 0.0, 1.0]
    with pytest.raises(ValueError, match=r"2 volume\(s\) fail, index: norm = 3: 0\.9, 5: nan"):
        make_gtab(bvals, bvecs)


def test_find_shells_groups_jittered_bvals():
    bvals = np.array([0, 995, 1005, 1000, 2010, 1990, 5, 3000], dtype=float)
    shells = find_shells(bvals)
    np.testing.assert_allclose(shells.bvals, [1000.0, 2000.0, 3000.0])
    np.testing.assert_array_equal(shells.index, [-1, 0, 0, 0, 1, 1, -1, 2])
    np.testing.assert_array_equal(shells.n_directions, [3, 2, 1])
    assert shells.index.dtype == np.int64


def test_find_shells_on_small_64d_gives_one_shell_of_64():
    bvals, _ = read_bvals_bvecs(*get_fnames(name="small_64D")[1:])
    shells = find_shells(bvals)
    np.testing.assert_array_equal(shells.n_directions, [64])
    np.testing.assert_allclose(shells.bvals, [bvals[1:].mean()], rtol=1e-15)
    assert 987 < shells.bvals[0] < 1003


def test_shells_are_read_only():
    shells = find_shells(np.r_[0.0, 1000, 1000])
    with pytest.raises(ValueError, match="read-only"):
        shells.index[0] = 3


def test_find_shells_needs_a_dw_volume():
    with pytest.raises(ValueError, match=r"no diffusion-weighted volume \(b > 50.0 s/mm²\) found among 2 volumes"):
        find_shells(np.r_[0.0, 20.0])


def test_shells_validate_index_range():
    with pytest.raises(ValueError, match=r"shell index must lie in \[-1, 0\], got -1..1"):
        Shells(bvals=np.r_[1000.0], index=np.r_[-1, 0, 1])
    with pytest.raises(ValueError, match=r"Shells needs bvals \(S,\) and index \(N,\), got \(1, 1\) and \(2,\)"):
        Shells(bvals=np.ones((1, 1)), index=np.r_[-1, 0])


@pytest.mark.parametrize(
    ("n_directions", "lmax_cap", "expected"),
    [
        (1, 8, 0),
        (5, 8, 0),
        (6, 8, 2),
        (14, 8, 2),
        (15, 8, 4),
        (27, 8, 4),
        (28, 8, 6),
        (44, 8, 6),
        (45, 8, 8),
        (64, 8, 8),
        (1000, 8, 8),
        (90, 12, 10),
        (91, 12, 12),
        (200, 0, 0),
        (30, 4, 4),
    ],
)
def test_max_sh_order(n_directions, lmax_cap, expected):
    assert max_sh_order(n_directions, lmax_cap=lmax_cap) == expected


def test_max_sh_order_rejects_bad_input():
    with pytest.raises(ValueError, match="n_directions must be >= 1, got 0"):
        max_sh_order(0)
    with pytest.raises(TypeError, match="n_directions must be an int, got float"):
        max_sh_order(6.0)
    with pytest.raises(ValueError, match="lmax must be even and >= 0, got 3"):
        max_sh_order(30, lmax_cap=3)
