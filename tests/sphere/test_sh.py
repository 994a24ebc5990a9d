"""Tests of equidmri.sphere.sh: dipy SH bases at pixel centres, fits and rotations."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation
from scipy.special import eval_legendre

from equidmri.sphere import hemisphere, sh

BASES = ("descoteaux07", "tournier07")


def _unit(n, seed):
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize(("lmax", "k"), [(0, 1), (2, 6), (4, 15), (8, 45), (18, 190)])
def test_coefficient_counts_round_trip(lmax, k):
    assert sh.n_coeffs(lmax) == k
    assert sh.lmax_from_n_coeffs(k) == lmax


def test_degrees_are_in_dipy_order():
    np.testing.assert_array_equal(sh.degrees(4), [0] + [2] * 5 + [4] * 9)


@pytest.mark.parametrize("sh_basis", BASES)
def test_sh_matrix_obeys_the_addition_theorem(sh_basis):
    """sum_m Y_lm(u) Y_lm(v) = (2l+1)/(4 pi) P_l(u.v): a closed form independent of the basis convention."""
    lmax = 8
    u, v = _unit(7, 1), _unit(7, 2)
    bu, bv = sh.sh_matrix(u, lmax, sh_basis), sh.sh_matrix(v, lmax, sh_basis)
    l_of = sh.degrees(lmax)
    cosines = np.sum(u * v, axis=1)
    for degree in range(0, lmax + 1, 2):
        cols = l_of == degree
        expected = (2 * degree + 1) / (4 * math.pi) * eval_legendre(degree, cosines)
        np.testing.assert_allclose(np.sum(bu[:, cols] * bv[:, cols], axis=1), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("sh_basis", BASES)
def test_sh_matrix_zonal_columns_at_the_pole(sh_basis):
    lmax = 8
    basis = sh.sh_matrix(np.array([[0.0, 0.0, 1.0]]), lmax, sh_basis)[0]
    l_of = sh.degrees(lmax)
    expected = np.zeros_like(basis)
    zonal_columns = [l * (l + 1) // 2 for l in range(0, lmax + 1, 2)]  # m = 0 sits in the middle of degree l
    expected[zonal_columns] = np.sqrt((2 * l_of[zonal_columns] + 1) / (4 * math.pi))
    np.testing.assert_allclose(basis, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("sh_basis", BASES)
def test_even_sh_are_antipodally_symmetric(sh_basis):
    u = _unit(10, 3)
    np.testing.assert_allclose(sh.sh_matrix(-u, 8, sh_basis), sh.sh_matrix(u, 8, sh_basis), atol=1e-12, rtol=0)


@settings(derandomize=True, max_examples=10, deadline=None)
@given(lmax=st.sampled_from([0, 2, 4, 6, 8]), nside=st.sampled_from([4, 8]), sh_basis=st.sampled_from(BASES))
def test_unregularised_fit_on_v_plus_round_trips_band_limited_functions(lmax, nside, sh_basis):
    vertices = hemisphere.hemisphere_centres(nside)
    coeffs = np.random.default_rng(lmax + nside).normal(size=sh.n_coeffs(lmax))
    samples = sh.sh_matrix(vertices, lmax, sh_basis) @ coeffs
    fitted = sh.sh_fit_matrix(vertices, lmax, sh_basis, smooth=0.0) @ samples
    np.testing.assert_allclose(fitted, coeffs, atol=1e-10, rtol=0)


def test_regularised_fit_keeps_degree_zero_and_shrinks_high_degrees():
    vertices = hemisphere.hemisphere_centres(4)
    basis = sh.sh_matrix(vertices, 8, "descoteaux07")
    operator = sh.sh_fit_matrix(vertices, 8, "descoteaux07", smooth=0.006)
    # a constant is not penalised by Laplace-Beltrami: exact
    np.testing.assert_allclose(operator @ basis[:, 0], np.eye(45)[0], atol=1e-12, rtol=0)
    # the closed form (B^T B + smooth diag(l(l+1))^2)^-1 B^T B of the shrinkage
    lb = (sh.degrees(8) * (sh.degrees(8) + 1)).astype(float)
    expected = np.linalg.solve(basis.T @ basis + 0.006 * np.diag(lb**2), basis.T @ basis)
    np.testing.assert_allclose(operator @ basis, expected, atol=1e-12, rtol=0)
    gain = np.diag(operator @ basis)
    assert gain[sh.degrees(8) == 8].max() < gain[sh.degrees(8) == 2].min() < 1.0


def test_laplace_beltrami_scales_each_degree_by_its_rescaled_eigenvalue():
    vertices = hemisphere.hemisphere_centres(8)
    basis = sh.sh_matrix(vertices, 8, "descoteaux07")
    l_values = sh.degrees(8)
    expected = 2.0 * l_values * (l_values + 1) / 72 - 1.0  # -1 at l = 0, +1 at l = lmax
    np.testing.assert_allclose(sh.laplace_beltrami(vertices, 8) @ basis, basis * expected, atol=1e-10, rtol=0)


def test_laplace_beltrami_commutes_with_rotations_of_band_limited_functions():
    vertices = hemisphere.hemisphere_centres(8)
    rotation = Rotation.random(random_state=3).as_matrix()
    coeffs = np.random.default_rng(2).normal(size=sh.n_coeffs(8))
    rotated = sh.sh_rotation_matrix(rotation, 8, "descoteaux07", "descoteaux07") @ coeffs
    operator = sh.laplace_beltrami(vertices, 8)
    basis = sh.sh_matrix(vertices, 8, "descoteaux07")
    filtered_then_rotated = sh.sh_matrix(vertices @ rotation, 8, "descoteaux07") @ (
        sh.sh_fit_matrix(vertices, 8, "descoteaux07", 0.0) @ (operator @ (basis @ coeffs))
    )
    np.testing.assert_allclose(operator @ (basis @ rotated), filtered_then_rotated, atol=1e-10, rtol=0)


@pytest.mark.parametrize("det", (1, -1))
@pytest.mark.parametrize(("basis_in", "basis_out"), [("descoteaux07", "descoteaux07"), ("descoteaux07", "tournier07")])
def test_sh_rotation_matrix_carries_band_limited_functions(det, basis_in, basis_out):
    lmax = 8
    rotation = Rotation.random(random_state=4).as_matrix() * det
    coeffs = np.random.default_rng(5).normal(size=sh.n_coeffs(lmax))
    u = _unit(20, 6)
    rotated = sh.sh_matrix(u, lmax, basis_out) @ (sh.sh_rotation_matrix(rotation, lmax, basis_in, basis_out) @ coeffs)
    expected = sh.sh_matrix(u @ rotation, lmax, basis_in) @ coeffs  # f(R^T u)
    np.testing.assert_allclose(rotated, expected, atol=1e-10, rtol=0)


def test_sh_rotation_matrix_cache_cannot_be_corrupted_by_callers():
    rotation = np.diag([1.0, -1.0, -1.0])
    first = sh.sh_rotation_matrix(rotation, 2, "descoteaux07", "tournier07")
    expected = first.copy()
    try:
        first *= 0.0
    except ValueError:  # read-only: the fix
        pass
    np.testing.assert_array_equal(sh.sh_rotation_matrix(rotation, 2, "descoteaux07", "tournier07"), expected)


@pytest.mark.parametrize("lmax", (2.0, True, "8", None))
def test_check_lmax_rejects_non_integers(lmax):
    with pytest.raises(TypeError, match="lmax must be an int"):
        sh.check_lmax(lmax)


@pytest.mark.parametrize("lmax", (-2, 3, 7))
def test_check_lmax_rejects_odd_or_negative(lmax):
    with pytest.raises(ValueError, match="lmax must be even and >= 0"):
        sh.check_lmax(lmax)


@pytest.mark.parametrize("k", (0, 2, 7, 44, 46))
def test_lmax_from_n_coeffs_rejects_other_counts(k):
    with pytest.raises(ValueError, match="is not the coefficient count"):
        sh.lmax_from_n_coeffs(k)


@pytest.mark.parametrize("directions", (np.zeros((4, 2)), np.zeros(3), np.zeros((2, 3, 1))))
def test_sh_matrix_rejects_bad_direction_shapes(directions):
    with pytest.raises(ValueError, match=r"directions must have shape \(V, 3\)"):
        sh.sh_matrix(directions, 2, "descoteaux07")


def test_sh_matrix_rejects_unknown_basis():
    with pytest.raises(ValueError, match="sh_basis must be one of"):
        sh.sh_matrix(_unit(3, 0), 2, "mrtrix")


def test_sh_fit_matrix_rejects_negative_smoothing():
    with pytest.raises(ValueError, match="smooth must be >= 0"):
        sh.sh_fit_matrix(_unit(10, 0), 2, "descoteaux07", smooth=-1e-3)


def test_sh_fit_matrix_rejects_too_few_directions():
    with pytest.raises(ValueError, match=r"14 directions cannot determine 15 SH coefficients \(lmax 4\)"):
        sh.sh_fit_matrix(_unit(14, 0), 4, "descoteaux07")


@pytest.mark.parametrize("rotation", (np.eye(3) * 2, np.eye(2), np.ones((3, 3))))
def test_sh_rotation_matrix_rejects_non_orthogonal_input(rotation):
    with pytest.raises(ValueError, match=r"rotation must be an orthogonal \(3, 3\) matrix"):
        sh.sh_rotation_matrix(rotation, 2, "descoteaux07", "descoteaux07")
