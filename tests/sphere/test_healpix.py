"""Tests of equidmri.sphere.healpix: NESTED centres, antipodes, hierarchy and exact grid symmetries."""

import math

import numpy as np
import pytest

from equidmri.sphere import healpix

NSIDES = (1, 2, 4, 8)
# Orthogonal maps that send the NESTED HEALPix centres onto themselves (STYLE.md §6).
GRID_SYMMETRIES = {
    "rot_z_90": np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    "rot_z_180": np.diag([-1.0, -1.0, 1.0]),
    "mirror_z": np.diag([1.0, 1.0, -1.0]),
    "swap_xy": np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    "antipodal": -np.eye(3),
}


@pytest.mark.parametrize("nside", NSIDES + (16,))
def test_npix_is_twelve_nside_squared(nside):
    assert healpix.npix(nside) == 12 * nside**2
    assert healpix.pixel_centres(nside).shape == (12 * nside**2, 3)


@pytest.mark.parametrize("nside", NSIDES)
def test_pixel_centres_are_unit_vectors(nside):
    norms = np.linalg.norm(healpix.pixel_centres(nside), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-14, rtol=0)


@pytest.mark.parametrize("nside", NSIDES)
def test_pixel_centres_are_antipodally_symmetric(nside):
    centres = healpix.pixel_centres(nside)
    dist = np.linalg.norm(centres[:, None, :] + centres[None, :, :], axis=-1)  # |p - (-q)|
    assert dist.min(axis=1).max() < 1e-12


@pytest.mark.parametrize("nside", NSIDES)
def test_antipode_index_is_a_fixed_point_free_involution(nside):
    anti = healpix.antipode_index(nside)
    centres = healpix.pixel_centres(nside)
    np.testing.assert_allclose(centres[anti], -centres, atol=1e-12, rtol=0)
    np.testing.assert_array_equal(anti[anti], np.arange(anti.size))
    assert not np.any(anti == np.arange(anti.size))


@pytest.mark.parametrize("nside", (2, 4, 8))
def test_nested_parent_is_child_div_4(nside):
    children = np.arange(healpix.npix(nside))
    parents = healpix.pixel_of(nside // 2, healpix.pixel_centres(nside))
    np.testing.assert_array_equal(parents, children // 4)


@pytest.mark.parametrize("nside", NSIDES)
def test_pixel_of_a_centre_is_its_own_index(nside):
    np.testing.assert_array_equal(healpix.pixel_of(nside, healpix.pixel_centres(nside)), np.arange(healpix.npix(nside)))


@pytest.mark.parametrize("nside", NSIDES)
@pytest.mark.parametrize("name", sorted(GRID_SYMMETRIES))
def test_symmetry_permutation_carries_a_linear_signal(nside, name):
    rotation = GRID_SYMMETRIES[name]
    centres = healpix.pixel_centres(nside)
    a = np.array([0.3, -1.1, 0.7])
    x = centres @ a  # x(v) = a . v
    perm = healpix.symmetry_permutation(nside, rotation)
    np.testing.assert_array_equal(np.sort(perm), np.arange(centres.shape[0]))
    # (x[perm])(v) = x(R^T v) = a . R^T v = (R a) . v
    np.testing.assert_allclose(x[perm], centres @ (rotation @ a), atol=1e-12, rtol=0)


@pytest.mark.parametrize("nside", (2, 4))
def test_symmetry_permutations_compose_like_rotations(nside):
    r1, r2 = GRID_SYMMETRIES["rot_z_90"], GRID_SYMMETRIES["swap_xy"]
    p1, p2 = healpix.symmetry_permutation(nside, r1), healpix.symmetry_permutation(nside, r2)
    x = np.random.randn(healpix.npix(nside))
    # carrying by r1, then by r2, is carrying by r2 @ r1
    np.testing.assert_array_equal(x[p1][p2], x[healpix.symmetry_permutation(nside, r2 @ r1)])


@pytest.mark.parametrize("nside", (2, 4, 8))
@pytest.mark.parametrize("name", sorted(GRID_SYMMETRIES))
def test_grid_symmetries_respect_the_nested_hierarchy(nside, name):
    fine = healpix.symmetry_permutation(nside, GRID_SYMMETRIES[name])
    coarse = healpix.symmetry_permutation(nside // 2, GRID_SYMMETRIES[name])
    np.testing.assert_array_equal(fine // 4, coarse[np.arange(fine.size) // 4])


@pytest.mark.parametrize("nside", (1.0, 0, 3, 6, -4, True, "8"))
def test_check_nside_rejects_non_powers_of_two(nside):
    with pytest.raises(ValueError, match="nside must be a power of two"):
        healpix.check_nside(nside)


def test_check_nside_accepts_numpy_integers():
    assert healpix.check_nside(np.int64(8)) == 8


def test_symmetry_permutation_rejects_a_quarter_turn_about_x():
    c, s = math.cos(math.pi / 2), math.sin(math.pi / 2)
    rot_x = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    with pytest.raises(ValueError, match="not a symmetry of the HEALPix grid"):
        healpix.symmetry_permutation(4, rot_x)
