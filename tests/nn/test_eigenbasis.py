"""Tests of equidmri.nn.layers.eigenbasis and of the spectral path of SpatioSphericalConv built on it.

The reference is the spectral path with the dense eigenvectors of ``graph.laplacian_eigh`` in float64: any
orthonormal eigenbasis gives the same filter, because the spectral response depends on the eigenvalue only.
"""

import pytest
import torch

from equidmri.nn.layers import SpatioSphericalConv, SphereGrid, SphericalUnpool, eigenbasis, isotropic_stencil
from equidmri.nn.layers.pooling import Unpooled
from equidmri.nn.layers.support import channel_parts
from equidmri.sphere.graph import chebyshev_polynomials, laplacian_eigh
from equidmri.sphere.symmetry import symmetric_eigh

CASES = [(1, True), (2, False), (4, True), (8, True)]


def _dense_spectral_conv(conv, x):
    """SpatioSphericalConv's spectral path with U = laplacian_eigh's eigenvectors, float64."""
    eigvals, eigvecs = laplacian_eigh(conv.grid.nside, hemisphere=conv.grid.hemisphere)
    u = torch.tensor(eigvecs)
    b, v, nx, ny, nz, c = x.shape
    weight = conv.class_weight().double()
    response = torch.einsum("kv,kiro->rvio", torch.tensor(chebyshev_polynomials(eigvals, conv.cheb_order)), weight)
    spectrum = (u.T @ x.double().reshape(b, v, -1)).reshape(b, v, -1, c)
    shape = (b, v, nx, ny, nz, conv.out_channels)
    out = isotropic_stencil([(spectrum @ response[r]).reshape(shape) for r in range(weight.shape[2])])
    out = (u @ out.reshape(b, v, -1)).reshape(shape)
    return out if conv.bias is None else out + conv.bias.double()


def _randomised_conv(grid, kernel_size=3):
    conv = SpatioSphericalConv(3, 2, grid, cheb_order=5, kernel_size=kernel_size)
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.randn_like(p))
    return conv


@pytest.fixture
def tiled(monkeypatch):
    """The tiled block path on every grid, with several tiles per call (the last one partial)."""
    monkeypatch.setattr(eigenbasis, "BLOCK_MIN_VERTICES", 0)
    monkeypatch.setattr(eigenbasis, "TILE_ELEMENTS", 7 * 12)


@pytest.mark.parametrize("path", ("tiled", "default"))
@pytest.mark.parametrize(("nside", "hemi"), CASES)
def test_analysis_and_synthesis_apply_the_block_eigenvectors(nside, hemi, path, request):
    if path == "tiled":
        request.getfixturevalue("tiled")
    transform = eigenbasis.EigenbasisTransform(SphereGrid(nside, hemi))
    u = torch.tensor(symmetric_eigh(nside, hemisphere=hemi).eigenvectors())
    x = torch.randn(2, u.shape[0], 31, dtype=torch.float64)
    torch.testing.assert_close(transform.analysis(x), u.T @ x, atol=1e-12, rtol=0)
    torch.testing.assert_close(transform.synthesis(x), u @ x, atol=1e-12, rtol=0)
    torch.testing.assert_close(transform.synthesis(transform.analysis(x)), x, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("nside", "hemi"), [(1, True), (2, True), (2, False)])
def test_analysis_and_synthesis_gradients_pass_gradcheck(nside, hemi, tiled):
    transform = eigenbasis.EigenbasisTransform(SphereGrid(nside, hemi))
    x = torch.randn(2, SphereGrid(nside, hemi).n_vertices, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(transform.analysis, (x,))
    assert torch.autograd.gradcheck(transform.synthesis, (x,))


def test_eigenbasis_transform_has_no_persistent_state_and_follows_double(tiled):
    transform = eigenbasis.EigenbasisTransform(SphereGrid(2))
    assert transform.state_dict() == {}
    assert transform.orbit_transform.dtype == torch.float64
    x = torch.randn(1, 24, 5)
    assert transform.analysis(x).dtype == torch.float32
    assert transform.double().synthesis(x.double()).dtype == torch.float64


@pytest.mark.parametrize("path", ("tiled", "default"))
@pytest.mark.parametrize(("nside", "hemi"), CASES)
def test_spectral_conv_equals_the_dense_eigenvector_computation_in_float64(nside, hemi, path, float64, request):
    if path == "tiled":
        request.getfixturevalue("tiled")
    conv = _randomised_conv(SphereGrid(nside, hemi))
    x = torch.randn(2, conv.grid.n_vertices, 3, 2, 2, 3, requires_grad=True)
    out, expected = conv(x), _dense_spectral_conv(conv, x)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    grad = torch.randn_like(out)
    inputs = (x,) + tuple(conv.parameters())
    for got, want in zip(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(expected, inputs, grad)):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_the_dense_path_serves_small_grids_and_the_block_path_large_ones():
    assert hasattr(eigenbasis.EigenbasisTransform(SphereGrid(4)), "eigvecs")
    large = eigenbasis.EigenbasisTransform(SphereGrid(8))
    assert not hasattr(large, "eigvecs") and large.block_eigvecs_4.shape == (92, 92)


@pytest.mark.parametrize(("nside", "hemi"), [(2, False), (8, True)])
def test_spectral_conv_in_float32_is_the_float64_dense_computation_to_1e_5(nside, hemi):
    conv = _randomised_conv(SphereGrid(nside, hemi))
    x = torch.randn(1, conv.grid.n_vertices, 3, 3, 2, 3, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    out, expected = conv(x), _dense_spectral_conv(conv, x64)
    assert out.dtype == torch.float32
    assert ((out.double() - expected).abs().max() / expected.abs().max()).item() < 1e-5
    grad = torch.randn_like(out)
    inputs = (x,) + tuple(conv.parameters())
    expected_grads = torch.autograd.grad(expected, (x64,) + tuple(conv.parameters()), grad.double())
    for got, want in zip(torch.autograd.grad(out, inputs, grad), expected_grads):
        assert ((got.double() - want).abs().max() / want.abs().max()).item() < 1e-5


@pytest.mark.parametrize("path", ("tiled", "default"))
def test_orbit_order_transforms_are_the_grid_order_ones_reindexed(path, request):
    """Default path: nside 8 (384 vertices) in one tile, the synthesis written in place; tiled: several tiles
    per call, each copied."""
    if path == "tiled":
        request.getfixturevalue("tiled")
    grid = SphereGrid(8 if path == "default" else 2, True)
    plain, ordered = eigenbasis.EigenbasisTransform(grid), eigenbasis.EigenbasisTransform(grid, orbit_order=True)
    order = eigenbasis.orbit_vertex_order(grid)
    assert sorted(order.tolist()) == list(range(grid.n_vertices))
    x = torch.randn(2, grid.n_vertices, 31, dtype=torch.float64)
    torch.testing.assert_close(ordered.analysis(x[:, order]), plain.analysis(x), atol=1e-12, rtol=0)
    torch.testing.assert_close(ordered.synthesis(x), plain.synthesis(x)[:, order], atol=1e-12, rtol=0)


def test_orbit_order_needs_the_block_transform():
    grid = SphereGrid(4, True)  # 96 vertices: the dense transform
    assert eigenbasis.orbit_vertex_order(grid) is None
    with pytest.raises(ValueError, match="orbit order needs the block transform"):
        eigenbasis.EigenbasisTransform(grid, orbit_order=True)
    with pytest.raises(ValueError, match="orbit_order needs method 'spectral'"):
        SpatioSphericalConv(3, 2, SphereGrid(8, True), method="chebyshev", orbit_order=True)


@pytest.mark.parametrize(("nside", "orbit_order"), [(4, False), (8, False), (8, True)])
def test_forward_parts_is_forward_of_the_concatenation(nside, orbit_order):
    """The unpooled part read through U^T P from the coarse map, the skip part analysed: the convolution of their
    concatenation (nside 4: the dense transform; 8: the block one, in the grid's or the orbit order)."""
    grid = SphereGrid(nside, True)
    order = eigenbasis.orbit_vertex_order(grid) if orbit_order else None
    conv = SpatioSphericalConv(3, 2, grid, cheb_order=5, kernel_size=1, orbit_order=orbit_order).double()
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.randn_like(p))
    unpool = SphericalUnpool(grid, order).double()
    coarse = torch.randn(1, grid.coarser().n_vertices, 5, 1, 1, 2, dtype=torch.float64)
    skip = torch.randn(1, grid.n_vertices, 5, 1, 1, 1, dtype=torch.float64)
    parts = (Unpooled(coarse, unpool), skip)
    [unpooled, _] = channel_parts(parts)
    torch.testing.assert_close(unpooled, unpool(coarse), atol=0, rtol=0)
    with torch.inference_mode():
        got = conv.forward_parts(parts)
    torch.testing.assert_close(got, conv(torch.cat([unpool(coarse), skip], dim=-1)), atol=1e-12, rtol=0)
    [analysis] = conv._unpooling_spectra.values()
    assert len(analysis.blocks) == (6 if nside == 8 else 1)  # block-diagonal through the coarse eigenbasis at nside 8


def test_forward_parts_needs_a_voxel_wise_spectral_convolution():
    conv = SpatioSphericalConv(2, 2, SphereGrid(4, True), kernel_size=3)
    with pytest.raises(ValueError, match="forward_parts needs kernel_size 1"):
        conv.forward_parts([torch.zeros(1, 96, 2, 1, 1, 2)])
