"""Tests of equidmri.nn.layers.spatio_spherical: the isotropic stencil and SpatioSphericalConv.

Exact-algebra checks build the layers with float64 as the default dtype (fixture ``float64``): the
geometry buffers are cast to the default dtype when a layer is built.
"""

import inspect
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from equidmri.nn.layers import SpatioSphericalConv, SphereGrid, isotropic_stencil
from equidmri.nn.layers.spatio_spherical import METHODS as LAYER_METHODS
from equidmri.sphere import healpix
from equidmri.sphere.graph import chebyshev_stack

HAS_METHOD = "method" in inspect.signature(SpatioSphericalConv).parameters
METHODS = LAYER_METHODS if HAS_METHOD else (None,)  # every computation path of the layer
GRID_SYMMETRIES = {
    "rot_z_90": np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    "rot_z_180": np.diag([-1.0, -1.0, 1.0]),
    "rot_z_270": np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    "mirror_z": np.diag([1.0, 1.0, -1.0]),
    "swap_xy": np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    "antipodal": -np.eye(3),
}
# Spatial counterparts on (B, V, X, Y, Z, C): torch.rot90 over (X, Y) turns x towards y, i.e. it carries
# the voxel field by the same +90° rotation about z as GRID_SYMMETRIES["rot_z_90"].
SPATIAL = {
    "rot_z_90": lambda t: torch.rot90(t, 1, dims=(2, 3)),
    "rot_z_180": lambda t: torch.rot90(t, 2, dims=(2, 3)),
    "rot_z_270": lambda t: torch.rot90(t, 3, dims=(2, 3)),
    "mirror_z": lambda t: torch.flip(t, dims=(4,)),
    "swap_xy": lambda t: t.transpose(2, 3),
    "antipodal": lambda t: torch.flip(t, dims=(2, 3, 4)),
}
CUBE_ONLY = {
    "rot_xz_90": lambda t: torch.rot90(t, 1, dims=(2, 4)),
    "rot_yz_270": lambda t: torch.rot90(t, 3, dims=(3, 4)),
    "flip_x": lambda t: torch.flip(t, dims=(2,)),
    "swap_yz": lambda t: t.transpose(3, 4),
}


def _conv(*args, method=None, **kwargs):
    if method is not None:
        kwargs["method"] = method
    return SpatioSphericalConv(*args, **kwargs)


def _vertex_perm(grid, rotation):
    """Vertex permutation of ``grid`` carrying a signal by ``rotation`` (through the representative map on V+)."""
    return torch.tensor(grid.position[healpix.symmetry_permutation(grid.nside, rotation)[grid.pixels]])


def _randomise(conv):
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.randn_like(p))
    return conv


def _class_kernel(class_weight):
    """``(C_in, R, C_out)`` class weights -> dense 3D kernel ``(C_out, C_in, e, e, e)`` for conv3d."""
    n_classes = class_weight.shape[1]
    edge = 1 if n_classes == 1 else 3
    kernel = class_weight.new_zeros(class_weight.shape[2], class_weight.shape[0], edge, edge, edge)
    for d in itertools.product(range(edge), repeat=3):
        r = sum((i - edge // 2) ** 2 for i in d)
        kernel[(slice(None), slice(None)) + d] = class_weight[:, r, :].T
    return kernel


def _reference_conv(conv, x):
    """SHD eq. 2 spelled out: T_k over V, then a dense 'same' conv3d with the class-weighted kernel per k."""
    stack = torch.tensor(chebyshev_stack(conv.grid.nside, conv.cheb_order, hemisphere=conv.grid.hemisphere))
    b, v, nx, ny, nz, c = x.shape
    weight = conv.class_weight()
    out = 0
    for k in range(conv.cheb_order):
        filtered = torch.einsum("uv,bvxyzc->buczyx", stack[k], x).transpose(3, 5)  # (B, V, C, X, Y, Z)
        kernel = _class_kernel(weight[k])
        y = F.conv3d(filtered.reshape(b * v, c, nx, ny, nz), kernel, padding=kernel.shape[-1] // 2)
        out = out + y.reshape(b, v, -1, nx, ny, nz).permute(0, 1, 3, 4, 5, 2)
    return out if conv.bias is None else out + conv.bias


def test_rot90_over_x_y_carries_voxels_like_the_z_quarter_turn_of_the_sphere():
    """A linear field a . p on centred voxel coordinates becomes (R a) . p, as on the sphere (test_healpix)."""
    a = torch.tensor([0.3, -1.1, 0.7], dtype=torch.float64)
    coords = torch.stack(torch.meshgrid(*(torch.arange(5.0, dtype=torch.float64) - 2,) * 3, indexing="ij"), dim=-1)
    field = (coords @ a)[None, None, ..., None]  # (B, V, X, Y, Z, C) with B = V = C = 1
    for name in SPATIAL:
        rotation = torch.tensor(GRID_SYMMETRIES[name])
        expected = (coords @ (rotation @ a))[None, None, ..., None]
        torch.testing.assert_close(SPATIAL[name](field), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("n_classes", (1, 4))
def test_isotropic_stencil_equals_an_explicit_conv3d(n_classes, float64):
    classes = torch.randn(n_classes, 2, 3, 4, 5, 3, 2)
    weights = torch.randn(n_classes)
    out = isotropic_stencil(classes * weights[:, None, None, None, None, None, None])
    # one dense 3x3x3 kernel, weight w_r on the taps at squared distance r of input channel r, zero padding
    kernel = _class_kernel(torch.diag(weights)[:, :, None])  # (1, R, e, e, e)
    _, b, v, nx, ny, nz, c = classes.shape
    stacked = classes.permute(1, 2, 6, 0, 3, 4, 5).reshape(b * v * c, n_classes, nx, ny, nz)
    expected = F.conv3d(stacked, kernel, padding=kernel.shape[-1] // 2)
    expected = expected.reshape(b, v, c, nx, ny, nz).permute(0, 1, 3, 4, 5, 2)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


def test_isotropic_stencil_gradient_is_its_adjoint(float64):
    classes = torch.randn(4, 1, 2, 3, 2, 4, 1, requires_grad=True)
    assert torch.autograd.gradcheck(isotropic_stencil, (classes,), atol=1e-10)
    # <S c, g> = <c, S* g>: the backward of the stencil against an explicit conv3d's
    grad_out = torch.randn(1, 2, 3, 2, 4, 1)
    (got,) = torch.autograd.grad(isotropic_stencil(classes), classes, grad_out)
    dense = classes.detach().clone().requires_grad_(True)
    kernel = _class_kernel(torch.eye(4)[:, :, None])
    flat = dense.permute(1, 2, 6, 0, 3, 4, 5).reshape(2, 4, 3, 2, 4)
    expected_out = F.conv3d(flat, kernel, padding=1).reshape(1, 2, 1, 3, 2, 4).permute(0, 1, 3, 4, 5, 2)
    (expected,) = torch.autograd.grad(expected_out, dense, grad_out)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


def test_isotropic_stencil_counts_taps_per_class(float64):
    # a unit impulse in class r spreads to the 1, 6, 12, 8 taps at squared distance r
    for r, n_taps in enumerate((1, 6, 12, 8)):
        classes = torch.zeros(4, 1, 1, 5, 5, 5, 1)
        classes[r, 0, 0, 2, 2, 2, 0] = 1.0
        out = isotropic_stencil(classes)[0, 0, ..., 0]
        assert out.sum().item() == n_taps
        idx = torch.stack(torch.nonzero(out, as_tuple=True), dim=1) - 2
        assert torch.all(idx.square().sum(dim=1) == r)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("hemi", (True, False))
@pytest.mark.parametrize(("kernel_size", "kernel"), [(3, "full"), (3, "rank1"), (1, "full")])
def test_conv_equals_reference_formula(method, hemi, kernel_size, kernel, float64):
    conv = _randomise(
        _conv(3, 2, SphereGrid(2, hemi), cheb_order=4, kernel_size=kernel_size, kernel=kernel, method=method)
    )
    x = torch.randn(2, conv.grid.n_vertices, 4, 3, 2, 3)
    torch.testing.assert_close(conv(x), _reference_conv(conv, x), atol=1e-10, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_conv_gradients_pass_gradcheck(method, float64):
    conv = _randomise(_conv(2, 2, SphereGrid(1), cheb_order=3, kernel="rank1", method=method))
    x = torch.randn(1, 6, 3, 2, 2, 2, requires_grad=True)
    names = [name for name, _ in conv.named_parameters()]

    def run(x, *weights):
        return torch.func.functional_call(conv, dict(zip(names, weights)), (x,))

    weights = tuple(p.detach().clone().requires_grad_(True) for p in conv.parameters())
    assert torch.autograd.gradcheck(run, (x,) + weights)


def test_rank1_class_weight_is_the_outer_product(float64):
    conv = _randomise(SpatioSphericalConv(2, 3, SphereGrid(2), cheb_order=3, kernel="rank1"))
    expected = torch.einsum("kio,iro->kiro", conv.weight[:, :, 0], conv.weight_iso[0])
    torch.testing.assert_close(conv.class_weight(), expected, atol=1e-15, rtol=0)


def test_conv_without_bias_maps_zero_to_zero():
    conv = SpatioSphericalConv(2, 3, SphereGrid(2), bias=False)
    assert conv.bias is None
    assert conv(torch.zeros(1, 24, 2, 2, 2, 2)).abs().max().item() == 0.0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("nside", (1, 2, 4))
@pytest.mark.parametrize("kernel", ("full", "rank1"))
def test_hemispherical_conv_equals_full_sphere_conv_for_symmetric_inputs(method, nside, kernel, float64):
    hemi = _randomise(_conv(3, 2, SphereGrid(nside), cheb_order=5, kernel=kernel, method=method))
    full = _conv(3, 2, SphereGrid(nside, hemisphere=False), cheb_order=5, kernel=kernel, method=method)
    full.load_state_dict(hemi.state_dict())
    grid = hemi.grid
    x_plus = torch.randn(2, grid.n_vertices, 3, 2, 2, 3)
    x = x_plus[:, torch.tensor(grid.position)]  # antipodally symmetric on the full sphere
    torch.testing.assert_close(full(x)[:, torch.tensor(grid.pixels)], hemi(x_plus), atol=1e-10, rtol=0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("hemi", (True, False))
@pytest.mark.parametrize("name", ("rot_z_90", "mirror_z", "swap_xy", "antipodal"))
def test_conv_commutes_with_grid_symmetries(method, hemi, name, float64):
    conv = _randomise(_conv(3, 2, SphereGrid(4, hemi), cheb_order=5, method=method))
    perm = _vertex_perm(conv.grid, GRID_SYMMETRIES[name])
    x = torch.randn(2, conv.grid.n_vertices, 3, 3, 2, 3)
    torch.testing.assert_close(conv(x[:, perm]), conv(x)[:, perm], atol=1e-10, rtol=0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["rot_z_90"] + sorted(CUBE_ONLY))
def test_conv_commutes_with_spatial_cube_symmetries(method, name, float64):
    spatial = {**SPATIAL, **CUBE_ONLY}[name]
    conv = _randomise(_conv(3, 2, SphereGrid(2), cheb_order=4, method=method))
    x = torch.randn(2, conv.grid.n_vertices, 4, 4, 4, 3)
    torch.testing.assert_close(conv(spatial(x)), spatial(conv(x)), atol=1e-10, rtol=0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("hemi", (True, False))
@pytest.mark.parametrize("name", ("rot_z_90", "rot_z_180", "rot_z_270", "mirror_z", "swap_xy"))
def test_conv_commutes_with_joint_voxel_and_grid_symmetries(method, hemi, name, float64):
    """The same orthogonal map applied to the voxel grid (torch.rot90 / flip / transpose) and the sphere."""
    spatial = SPATIAL[name]
    conv = _randomise(_conv(2, 3, SphereGrid(2, hemi), cheb_order=5, method=method))
    perm = _vertex_perm(conv.grid, GRID_SYMMETRIES[name])
    x = torch.randn(1, conv.grid.n_vertices, 4, 3, 2, 2)  # non-cubic: the voxel map must move the axes too
    torch.testing.assert_close(conv(spatial(x[:, perm])), spatial(conv(x))[:, perm], atol=1e-10, rtol=0)


def test_all_four_methods_are_tested():
    assert set(METHODS) == {"spectral", "chebyshev", "dense-recursion", "sparse-recursion"}


PATHS = [(m, "stencil") for m in LAYER_METHODS if m != "chebyshev"] + [
    (m, "conv3d") for m in LAYER_METHODS if m != "spectral"
]


@pytest.mark.parametrize(("method", "spatial"), PATHS)
@pytest.mark.parametrize("hemi", (True, False))
@pytest.mark.parametrize(("kernel", "kernel_size"), (("full", 3), ("rank1", 3), ("full", 1)))
def test_every_path_agrees_with_the_precomputed_chebyshev_stencil_path(
    method, spatial, hemi, kernel, kernel_size, float64
):
    cheb = _randomise(_conv(3, 2, SphereGrid(4, hemi), kernel=kernel, kernel_size=kernel_size, method="chebyshev"))
    other = _conv(3, 2, SphereGrid(4, hemi), kernel=kernel, kernel_size=kernel_size, method=method, spatial=spatial)
    other.load_state_dict(cheb.state_dict())
    x = torch.randn(2, cheb.grid.n_vertices, 3, 2, 2, 3)  # B = 2: the recursion's (V, B * ...) layout
    torch.testing.assert_close(other(x), cheb(x), atol=1e-10, rtol=0)
    grad = torch.randn_like(cheb(x))
    expected = torch.autograd.grad(cheb(x), tuple(cheb.parameters()), grad)
    got = torch.autograd.grad(other(x), tuple(other.parameters()), grad)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-10, rtol=0)


def test_conv3d_spatial_path_is_refused_with_the_spectral_method():
    with pytest.raises(ValueError, match="spatial must be one of"):
        SpatioSphericalConv(1, 1, SphereGrid(2), method="spectral", spatial="conv3d")


@pytest.mark.parametrize("hemi", (True, False))
def test_sparse_recursion_keeps_a_sparse_laplacian(hemi):
    conv = SpatioSphericalConv(1, 1, SphereGrid(4, hemi), method="sparse-recursion")
    assert conv.laplacian.is_sparse and conv.laplacian.dtype == torch.float64
    assert conv.laplacian._nnz() < conv.grid.n_vertices**2 / 4
    dense = SpatioSphericalConv(1, 1, SphereGrid(4, hemi), method="dense-recursion").laplacian
    torch.testing.assert_close(conv.laplacian.to_dense(), dense, atol=0, rtol=0)


def test_double_restores_float64_accurate_geometry():
    hemi = _randomise(SpatioSphericalConv(3, 2, SphereGrid(2))).double()
    full = SpatioSphericalConv(3, 2, SphereGrid(2, hemisphere=False)).double()
    full.load_state_dict(hemi.state_dict())
    x_plus = torch.randn(1, 24, 3, 2, 2, 3, dtype=torch.float64)
    x = x_plus[:, torch.tensor(hemi.grid.position)]
    torch.testing.assert_close(full(x)[:, torch.tensor(hemi.grid.pixels)], hemi(x_plus), atol=1e-10, rtol=0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kernel", ("full", "rank1"))
def test_state_dict_round_trip_and_double(method, kernel):
    conv = _randomise(_conv(2, 3, SphereGrid(2), cheb_order=3, kernel=kernel, method=method))
    expected_keys = {"weight", "bias"} | ({"weight_iso"} if kernel == "rank1" else set())
    assert set(conv.state_dict()) == expected_keys  # no geometry buffer is persistent
    fresh = _conv(2, 3, SphereGrid(2), cheb_order=3, kernel=kernel, method=method)
    fresh.load_state_dict(conv.state_dict())
    x = torch.randn(1, 24, 3, 2, 2, 2)
    torch.testing.assert_close(fresh(x), conv(x), atol=0, rtol=0)
    out64 = conv.double()(x.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64, fresh(x).double(), atol=1e-5, rtol=0)


def test_conv_rejects_non_positive_channels():
    with pytest.raises(ValueError, match="channel counts must be >= 1, got 0 -> 2"):
        SpatioSphericalConv(0, 2, SphereGrid(2))


def test_conv_rejects_an_unknown_kernel_form():
    with pytest.raises(ValueError, match="kernel must be one of"):
        SpatioSphericalConv(1, 2, SphereGrid(2), kernel="rank2")


@pytest.mark.parametrize("kernel_size", (2, 5))
def test_conv_rejects_unsupported_kernel_sizes(kernel_size):
    with pytest.raises(ValueError, match=r"kernel_size must be one of \[1, 3\]"):
        SpatioSphericalConv(1, 2, SphereGrid(2), kernel_size=kernel_size)


@pytest.mark.parametrize("method", METHODS)
def test_conv_rejects_a_zero_chebyshev_order(method):
    with pytest.raises(ValueError, match="cheb_order must be an int >= 1"):
        _conv(1, 2, SphereGrid(2), cheb_order=0, method=method)


@pytest.mark.skipif(not HAS_METHOD, reason="SpatioSphericalConv has no `method` argument yet")
def test_conv_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="method must be one of"):
        _conv(1, 2, SphereGrid(2), method="fft")


def test_isotropic_stencil_rejects_other_class_counts():
    with pytest.raises(ValueError, match="expected 1 or 4 distance classes on axis 0, got 2"):
        isotropic_stencil(torch.randn(2, 1, 1, 2, 2, 2, 1))


@pytest.mark.parametrize("shape", [(1, 24, 2, 2, 2, 3), (1, 48, 2, 2, 2, 2)])
def test_conv_rejects_wrong_input_shapes(shape):
    with pytest.raises(ValueError, match=r"expected \(B, 24, X, Y, Z, 2\)"):
        SpatioSphericalConv(2, 2, SphereGrid(2))(torch.randn(shape))
