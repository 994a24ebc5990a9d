"""Tests of equidmri.nn.layers.pooling: HEALPix mean pooling and unpooling on V and V+."""

import numpy as np
import pytest
import torch

from equidmri.nn.layers import SphereGrid, SphericalPool, SphericalUnpool
from equidmri.sphere import healpix

GRID_SYMMETRIES = {
    "rot_z_90": np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    "mirror_z": np.diag([1.0, 1.0, -1.0]),
    "swap_xy": np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
}


def _grid_perm(grid, rotation):
    """Vertex permutation of ``grid`` realising ``rotation`` (composed with the representative map on V+)."""
    return torch.tensor(grid.position[healpix.symmetry_permutation(grid.nside, rotation)[grid.pixels]])


def test_full_sphere_pool_is_the_mean_of_the_four_children():
    grid = SphereGrid(2, hemisphere=False)
    x = torch.randn(2, 48, 3, 1, 2, 4, dtype=torch.float64)
    expected = x.reshape(2, 12, 4, 3, 1, 2, 4).mean(dim=2)
    torch.testing.assert_close(SphericalPool(grid)(x), expected, atol=1e-15, rtol=0)


def test_full_sphere_unpool_copies_the_parent():
    grid = SphereGrid(2, hemisphere=False)
    y = torch.randn(2, 12, 1, 2, 1, 3, dtype=torch.float64)
    torch.testing.assert_close(SphericalUnpool(grid)(y), y.repeat_interleave(4, dim=1), atol=0, rtol=0)


@pytest.mark.parametrize("nside", (2, 4, 8))
def test_hemisphere_pool_equals_full_sphere_pool_for_symmetric_signals(nside):
    hemi, full = SphereGrid(nside), SphereGrid(nside, hemisphere=False)
    x_plus = torch.randn(2, hemi.n_vertices, 2, 1, 1, 3, dtype=torch.float64)
    x = x_plus[:, torch.tensor(hemi.position)]
    expected = SphericalPool(full)(x)[:, torch.tensor(hemi.coarser().pixels)]
    torch.testing.assert_close(SphericalPool(hemi)(x_plus), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("nside", (2, 4, 8))
def test_hemisphere_unpool_equals_full_sphere_unpool_for_symmetric_signals(nside):
    hemi, full = SphereGrid(nside), SphereGrid(nside, hemisphere=False)
    y_plus = torch.randn(2, hemi.coarser().n_vertices, 1, 2, 1, 3, dtype=torch.float64)
    y = y_plus[:, torch.tensor(hemi.coarser().position)]
    expected = SphericalUnpool(full)(y)[:, torch.tensor(hemi.pixels)]
    torch.testing.assert_close(SphericalUnpool(hemi)(y_plus), expected, atol=0, rtol=0)


@pytest.mark.parametrize("hemi", (True, False))
def test_pool_after_unpool_is_the_identity(hemi):
    grid = SphereGrid(8, hemi)
    y = torch.randn(1, grid.coarser().n_vertices, 2, 2, 1, 2, dtype=torch.float64)
    torch.testing.assert_close(SphericalPool(grid)(SphericalUnpool(grid)(y)), y, atol=1e-15, rtol=0)


@pytest.mark.parametrize("hemi", (True, False))
@pytest.mark.parametrize("name", sorted(GRID_SYMMETRIES))
def test_pooling_commutes_with_grid_symmetries(hemi, name):
    rotation = GRID_SYMMETRIES[name]
    grid = SphereGrid(4, hemi)
    fine, coarse = _grid_perm(grid, rotation), _grid_perm(grid.coarser(), rotation)
    x = torch.randn(2, grid.n_vertices, 1, 1, 2, 3, dtype=torch.float64)
    y = torch.randn(2, grid.coarser().n_vertices, 1, 1, 2, 3, dtype=torch.float64)
    pool, unpool = SphericalPool(grid), SphericalUnpool(grid)
    torch.testing.assert_close(pool(x[:, fine]), pool(x)[:, coarse], atol=1e-12, rtol=0)
    torch.testing.assert_close(unpool(y[:, coarse]), unpool(y)[:, fine], atol=0, rtol=0)


@pytest.mark.parametrize("module_cls", (SphericalPool, SphericalUnpool))
def test_pooling_state_dict_holds_no_geometry(module_cls):
    module = module_cls(SphereGrid(4))
    assert module.state_dict() == {}
    fresh = module_cls(SphereGrid(4))
    fresh.load_state_dict(module.state_dict())
    n_in = SphereGrid(4).n_vertices if module_cls is SphericalPool else SphereGrid(2).n_vertices
    x = torch.randn(1, n_in, 1, 1, 1, 2)
    torch.testing.assert_close(fresh(x), module(x), atol=0, rtol=0)
    torch.testing.assert_close(module.double()(x.double()), module(x).double(), atol=1e-6, rtol=0)


def test_pool_rejects_a_wrong_vertex_count():
    with pytest.raises(ValueError, match="expected 96 vertices on axis 1, got 24"):
        SphericalPool(SphereGrid(4))(torch.randn(1, 24, 1, 1, 1, 2))


def test_unpool_rejects_a_wrong_vertex_count():
    with pytest.raises(ValueError, match="expected 24 vertices on axis 1, got 96"):
        SphericalUnpool(SphereGrid(4))(torch.randn(1, 96, 1, 1, 1, 2))
