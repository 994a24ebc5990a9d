"""Tests of equidmri.sphere.hemisphere: the V+ rule and the representative map."""

import numpy as np
import pytest

from equidmri.sphere import healpix, hemisphere

NSIDES = (1, 2, 4, 8)


@pytest.mark.parametrize("nside", NSIDES)
def test_hemisphere_holds_exactly_one_pixel_per_antipodal_pair(nside):
    keep = np.zeros(healpix.npix(nside), dtype=bool)
    keep[hemisphere.hemisphere_pixels(nside)] = True
    assert keep.sum() == healpix.npix(nside) // 2
    np.testing.assert_array_equal(keep ^ keep[healpix.antipode_index(nside)], True)


@pytest.mark.parametrize("nside", NSIDES)
def test_hemisphere_follows_the_z_then_y_then_x_rule(nside):
    centres = healpix.pixel_centres(nside)
    keep = np.zeros(centres.shape[0], dtype=bool)
    keep[hemisphere.hemisphere_pixels(nside)] = True
    x, y, z = centres.T
    equator = np.abs(z) < 1e-12
    assert np.all(keep[z > 1e-12]) and not np.any(keep[z < -1e-12])
    np.testing.assert_array_equal(keep[equator & (np.abs(y) > 1e-12)], y[equator & (np.abs(y) > 1e-12)] > 0)
    on_x_axis = equator & (np.abs(y) <= 1e-12)
    np.testing.assert_array_equal(keep[on_x_axis], x[on_x_axis] > 0)


@pytest.mark.parametrize(("nside", "n_upper", "n_equator"), [(1, 4, 2), (2, 20, 4), (4, 88, 8), (8, 368, 16)])
def test_hemisphere_counts(nside, n_upper, n_equator):
    z = hemisphere.hemisphere_centres(nside)[:, 2]
    assert (z > 1e-12).sum() == n_upper
    assert (np.abs(z) <= 1e-12).sum() == n_equator


def test_nside_1_needs_the_x_rule_on_the_equator():
    centres = hemisphere.hemisphere_centres(1)
    on_x_axis = (np.abs(centres[:, 2]) < 1e-12) & (np.abs(centres[:, 1]) < 1e-12)
    np.testing.assert_allclose(centres[on_x_axis], [[1.0, 0.0, 0.0]], atol=1e-12)


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        ((0, 0, 1), True),
        ((0, 0, -1), False),
        ((0, 1, 0), True),
        ((0, -1, 0), False),
        ((1, 0, 0), True),
        ((-1, 0, 0), False),
        ((0.6, -0.8, 1e-3), True),
        ((0.6, 0.8, -1e-3), False),
    ],
)
def test_in_hemisphere_on_explicit_directions(direction, expected):
    assert hemisphere.in_hemisphere(np.array([direction], dtype=float))[0] == expected


@pytest.mark.parametrize("nside", NSIDES)
def test_representative_map_is_consistent(nside):
    pixels = hemisphere.hemisphere_pixels(nside)
    rep = hemisphere.representative(nside)
    anti = healpix.antipode_index(nside)
    np.testing.assert_array_equal(rep[pixels], np.arange(pixels.size))
    np.testing.assert_array_equal(rep[anti], rep)
    chosen = pixels[rep]
    all_pixels = np.arange(rep.size)
    assert np.all((chosen == all_pixels) | (chosen == anti))


@pytest.mark.parametrize("nside", NSIDES)
def test_hemisphere_centres_are_the_v_plus_centres(nside):
    np.testing.assert_array_equal(
        hemisphere.hemisphere_centres(nside), healpix.pixel_centres(nside)[hemisphere.hemisphere_pixels(nside)]
    )
    assert np.all(np.diff(hemisphere.hemisphere_pixels(nside)) > 0)


def test_hemisphere_rejects_a_bad_nside():
    with pytest.raises(ValueError, match="nside must be a power of two"):
        hemisphere.hemisphere_pixels(3)
