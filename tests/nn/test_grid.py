"""Tests of equidmri.nn.layers.grid.SphereGrid: pixels, representative positions, pooling indices."""

import numpy as np
import pytest

from equidmri.nn.layers import SphereGrid
from equidmri.sphere import healpix, hemisphere


@pytest.mark.parametrize("nside", (1, 2, 4, 8))
def test_full_sphere_grid_is_every_pixel(nside):
    grid = SphereGrid(nside, hemisphere=False)
    np.testing.assert_array_equal(grid.pixels, np.arange(12 * nside**2))
    np.testing.assert_array_equal(grid.position, np.arange(12 * nside**2))
    np.testing.assert_array_equal(grid.vertices, healpix.pixel_centres(nside))
    assert grid.n_vertices == 12 * nside**2


@pytest.mark.parametrize("nside", (1, 2, 4, 8))
def test_hemisphere_grid_is_v_plus_with_representatives(nside):
    grid = SphereGrid(nside)
    assert grid.hemisphere and grid.n_vertices == 6 * nside**2
    np.testing.assert_array_equal(grid.pixels, hemisphere.hemisphere_pixels(nside))
    np.testing.assert_array_equal(grid.position, hemisphere.representative(nside))
    np.testing.assert_array_equal(grid.vertices, hemisphere.hemisphere_centres(nside))


def test_full_sphere_pool_index_lists_the_nested_children():
    index = SphereGrid(4, hemisphere=False).pool_index()
    np.testing.assert_array_equal(index, 4 * np.arange(48)[:, None] + np.arange(4)[None, :])


@pytest.mark.parametrize("nside", (2, 4, 8))
def test_hemisphere_pool_index_reads_children_or_their_antipodes(nside):
    grid = SphereGrid(nside)
    index = grid.pool_index()
    parents = grid.coarser().pixels
    children = 4 * parents[:, None] + np.arange(4)
    anti = healpix.antipode_index(nside)
    read = grid.pixels[index]
    assert np.all((read == children) | (read == anti[children]))
    assert np.all(index >= 0) and np.all(index < grid.n_vertices)


def test_equatorial_parents_read_a_child_through_its_antipode_at_nside_8():
    grid = SphereGrid(8)
    children = 4 * grid.coarser().pixels[:, None] + np.arange(4)
    through_antipode = grid.pixels[grid.pool_index()] != children
    # ECOSYSTEM.md §3: 8 equatorial parents at nside 8 -> 4 have 3 children in V+ and read the 4th via its antipode
    np.testing.assert_array_equal(through_antipode.sum(axis=1)[through_antipode.any(axis=1)], [1] * 8)


@pytest.mark.parametrize("hemi", (True, False))
def test_unpool_index_points_at_the_parent(hemi):
    grid = SphereGrid(4, hemi)
    coarse = grid.coarser()
    read = coarse.pixels[grid.unpool_index()]
    parent = grid.pixels // 4
    anti = healpix.antipode_index(2)
    assert np.all((read == parent) | (read == anti[parent]))
    if not hemi:
        np.testing.assert_array_equal(read, parent)


def test_coarser_halves_nside_and_keeps_the_domain():
    assert SphereGrid(8, False).coarser() == SphereGrid(4, False)
    assert SphereGrid(2).coarser() == SphereGrid(1)


def test_nside_1_has_no_coarser_grid():
    with pytest.raises(ValueError, match="nside 1 has no coarser HEALPix grid"):
        SphereGrid(1).coarser()


def test_grid_rejects_a_bad_nside():
    with pytest.raises(ValueError, match="nside must be a power of two"):
        SphereGrid(6)
