"""SHSpatialConv, the E(3)-SH layer: band-limited outputs, equivariance to voxel-grid quarter turns."""

import pytest
import torch

from equidmri.nn.layers import SHSpatialConv, SphereGrid

LMAX = 4


@pytest.fixture(scope="module")
def layer():
    torch.manual_seed(0)
    grid = SphereGrid(2, hemisphere=True)
    return SHSpatialConv(2, 3, grid.vertices, LMAX).double().eval(), grid


def test_outputs_are_band_limited_to_lmax(layer):
    conv, grid = layer
    x = torch.randn(1, grid.n_vertices, 3, 3, 2, 2, dtype=torch.float64)
    out = conv(x)
    assert out.shape == (1, grid.n_vertices, 3, 3, 2, 3)
    reprojected = ((out.movedim(1, -1) @ conv.fit.T) @ conv.basis.T).movedim(-1, 1)
    torch.testing.assert_close(reprojected, out, atol=1e-10, rtol=0)


@pytest.mark.parametrize("turns", [1, 2])
def test_commutes_with_quarter_turns_of_the_voxel_grid(layer, turns):
    conv, grid = layer
    x = torch.randn(1, grid.n_vertices, 4, 4, 3, 2, dtype=torch.float64)
    torch.testing.assert_close(conv(x.rot90(turns, (2, 3))), conv(x).rot90(turns, (2, 3)), atol=1e-10, rtol=0)


def test_state_dict_reloads_to_the_same_outputs(layer):
    conv, grid = layer
    fresh = SHSpatialConv(2, 3, grid.vertices, LMAX).double().eval()
    fresh.load_state_dict(conv.state_dict())
    assert not any(name in ("fit", "basis") for name in conv.state_dict())
    x = torch.randn(1, grid.n_vertices, 3, 3, 3, 2, dtype=torch.float64)
    torch.testing.assert_close(fresh(x), conv(x))
