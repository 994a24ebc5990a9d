"""Tests of equidmri.nn.models.unet.SHDUNet: equivariance, receptive radius, initial output, checkpoints."""

import math

import numpy as np
import pytest
import torch

from equidmri.nn.models import SHDUNet
from equidmri.nn.models.unet import INITIAL_FODF
from equidmri.sphere import healpix

METHODS = ("chebyshev", "spectral")
GRID_SYMMETRIES = {
    "rot_z_90": np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    "rot_z_270": np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    "mirror_z": np.diag([1.0, 1.0, -1.0]),
    "swap_xy": np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
}
# The same maps on the voxel axes (X, Y, Z) starting at ``first``: torch.rot90 over (X, Y) is +90° about z.
SPATIAL = {
    "rot_z_90": lambda t, first: torch.rot90(t, 1, dims=(first, first + 1)),
    "rot_z_270": lambda t, first: torch.rot90(t, 3, dims=(first, first + 1)),
    "mirror_z": lambda t, first: torch.flip(t, dims=(first + 2,)),
    "swap_xy": lambda t, first: t.transpose(first, first + 1),
}


def _net(hemisphere=True, method="spectral", **kwargs):
    options = dict(nside=4, widths=(4, 4, 4), kernel_sizes=(3, 1, 1), cheb_order=3, hemisphere=hemisphere)
    return SHDUNet(2, n_iso=2, method=method, **{**options, **kwargs})


def _randomise(net):
    """Random weights and BatchNorm statistics, eval mode: a generic network, not the initial one."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 if "weight" in name else 0.1))
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.copy_(torch.randn_like(module.running_mean) * 0.1)
                module.running_var.copy_(torch.rand_like(module.running_var) + 0.5)
    return net.eval()


def _vertex_perm(grid, rotation):
    return torch.tensor(grid.position[healpix.symmetry_permutation(grid.nside, rotation)[grid.pixels]])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("hemi", "name"), [(True, name) for name in sorted(GRID_SYMMETRIES)] + [(False, "rot_z_90"), (False, "mirror_z")]
)
def test_unet_commutes_with_grid_symmetries(method, hemi, name, float64):
    net = _randomise(_net(hemi, method))
    perm = _vertex_perm(net.grid, GRID_SYMMETRIES[name])
    x = torch.randn(1, 2, 3, 2, 2, net.grid.n_vertices)
    fodf, iso = net(x)
    fodf_rot, iso_rot = net(x[..., perm])
    assert fodf.std() > 1e-3  # a generic, non-constant output
    torch.testing.assert_close(fodf_rot, fodf[..., perm], atol=1e-10, rtol=0)
    torch.testing.assert_close(iso_rot, iso, atol=1e-10, rtol=0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", sorted(GRID_SYMMETRIES))
def test_unet_commutes_with_joint_voxel_and_grid_symmetries(method, name, float64):
    net = _randomise(_net(True, method))
    perm = _vertex_perm(net.grid, GRID_SYMMETRIES[name])
    spatial = SPATIAL[name]
    x = torch.randn(1, 2, 4, 3, 2, net.grid.n_vertices)
    fodf, iso = net(x)
    fodf_rot, iso_rot = net(spatial(x[..., perm], 2))
    torch.testing.assert_close(fodf_rot, spatial(fodf, 1)[..., perm], atol=1e-10, rtol=0)
    torch.testing.assert_close(iso_rot, spatial(iso, 1), atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", ("rot_xz_90", "flip_x"))
def test_unet_commutes_with_voxel_symmetries_alone(name, float64):
    net = _randomise(_net(True))
    spatial = {"rot_xz_90": lambda t, a: torch.rot90(t, 1, dims=(a, a + 2)), "flip_x": lambda t, a: t.flip(a)}[name]
    x = torch.randn(1, 2, 3, 2, 3, net.grid.n_vertices)
    fodf, iso = net(x)
    fodf_rot, iso_rot = net(spatial(x, 2))
    torch.testing.assert_close(fodf_rot, spatial(fodf, 1), atol=1e-10, rtol=0)
    torch.testing.assert_close(iso_rot, spatial(iso, 1), atol=1e-10, rtol=0)


@pytest.mark.parametrize(("kernel_sizes", "radius"), [((3, 1, 1), 4), ((1, 3, 1), 4), ((1, 1, 3), 2), ((3, 3, 3), 10)])
def test_receptive_radius_is_the_reach_of_one_voxel(kernel_sizes, radius, float64):
    net = _randomise(_net(True, kernel_sizes=kernel_sizes))  # widths 2 would leave dead ReLUs at depth
    assert net.receptive_radius == radius
    n = 2 * radius + 5
    x = torch.randn(1, 2, n, 1, 1, net.grid.n_vertices)
    bumped = x.clone()
    bumped[:, :, n // 2] += torch.randn_like(bumped[:, :, n // 2])
    changed = (net(bumped)[0] - net(x)[0]).abs().amax(dim=(0, 2, 3, 4)) > 1e-12
    reach = torch.nonzero(changed).flatten() - n // 2
    assert reach.min().item() == -radius and reach.max().item() == radius


def test_initial_network_outputs_a_unit_integral_isotropic_fodf(float64):
    net = _net(True).eval()
    with torch.no_grad():
        net.head.weight.zero_()  # the head bias alone: softplus(bias) = 1 / (4 pi)
    fodf, iso = net(torch.randn(2, 2, 2, 2, 1, net.grid.n_vertices))
    assert INITIAL_FODF == pytest.approx(1 / (4 * math.pi))
    torch.testing.assert_close(fodf, torch.full_like(fodf, 1 / (4 * math.pi)), atol=1e-15, rtol=0)
    torch.testing.assert_close(iso, torch.full_like(iso, 1 / (4 * math.pi)), atol=1e-15, rtol=0)


def test_single_tissue_network_has_no_isotropic_output():
    net = SHDUNet(2, nside=2, widths=(2, 2), kernel_sizes=(1, 1), cheb_order=2).eval()
    fodf, iso = net(torch.randn(1, 2, 2, 1, 1, 24))
    assert iso.shape == (1, 2, 1, 1, 0) and torch.all(fodf > 0)


def test_unet_state_dict_round_trip_and_double():
    net = _randomise(_net(True))
    geometry = ("cheb", "eigvecs", "cheb_response", "index")
    assert not [k for k in net.state_dict() if k.rsplit(".", 1)[-1] in geometry]
    assert all(
        k.rsplit(".", 1)[-1] in {"weight", "bias", "weight_iso", "running_mean", "running_var", "num_batches_tracked"}
        for k in net.state_dict()
    )
    fresh = _net(True)
    fresh.load_state_dict(net.state_dict())
    x = torch.randn(1, 2, 2, 2, 2, net.grid.n_vertices)
    for a, b in zip(fresh.eval()(x), net(x)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    fodf64, iso64 = net.double()(x.double())
    assert fodf64.dtype == torch.float64
    torch.testing.assert_close(fodf64, fresh(x)[0].double(), atol=1e-5, rtol=1e-5)


def test_unet_rejects_mismatched_widths_and_kernel_sizes():
    with pytest.raises(ValueError, match="must be non-empty and of equal length"):
        SHDUNet(2, nside=4, widths=(4, 4), kernel_sizes=(3,))


def test_unet_rejects_empty_widths():
    with pytest.raises(ValueError, match="must be non-empty and of equal length"):
        SHDUNet(2, nside=4, widths=(), kernel_sizes=())


def test_unet_rejects_an_nside_too_small_for_its_depth():
    with pytest.raises(ValueError, match="nside 2 cannot be halved 2 times"):
        SHDUNet(2, nside=2, widths=(2, 2, 2), kernel_sizes=(1, 1, 1))


@pytest.mark.parametrize("shape", [(1, 3, 2, 2, 2, 96), (1, 2, 2, 2, 2, 192), (2, 2, 2, 96)])
def test_unet_rejects_wrong_input_shapes(shape):
    with pytest.raises(ValueError, match=r"expected \(B, 2, X, Y, Z, 96\)"):
        _net(True)(torch.randn(shape))


@pytest.mark.parametrize("hemi", [True, False])
def test_every_method_gives_the_unet_the_same_float32_outputs(hemi):
    reference = _randomise(_net(hemi, "chebyshev"))
    x = torch.rand(1, 2, 4, 4, 4, reference.grid.n_vertices)
    fodf, iso = reference(x)
    for method in ("spectral", "dense-recursion", "sparse-recursion"):
        net = _net(hemi, method).eval()
        net.load_state_dict(reference.state_dict())
        got_fodf, got_iso = net(x)
        torch.testing.assert_close(got_fodf, fodf, rtol=1e-5, atol=1e-5 * fodf.abs().max().item())
        torch.testing.assert_close(got_iso, iso, rtol=1e-5, atol=1e-5 * iso.abs().max().item())


@pytest.mark.parametrize("hemi", [True, False])
def test_the_finest_level_in_orbit_order_changes_no_output(hemi):
    """nside 8 (384 or 768 vertices): the spectral network keeps its finest maps in the eigenbasis's orbit order;
    its outputs, whole and masked, are the Chebyshev network's in the grid's order."""
    options = dict(nside=8, kernel_sizes=(1, 3, 1))
    reference = _randomise(_net(hemi, "chebyshev", **options))
    net = _net(hemi, "spectral", **options).eval()
    net.load_state_dict(reference.state_dict())
    assert reference.vertex_order is None
    assert sorted(net.vertex_order.tolist()) == list(range(net.grid.n_vertices))
    assert not torch.equal(net.vertex_order, torch.arange(net.grid.n_vertices))  # a real reordering
    x = torch.rand(1, 2, 3, 4, 3, net.grid.n_vertices)
    fodf, iso = reference(x)
    got_fodf, got_iso = net(x)
    torch.testing.assert_close(got_fodf, fodf, rtol=1e-5, atol=1e-5 * fodf.abs().max().item())
    torch.testing.assert_close(got_iso, iso, rtol=1e-5, atol=1e-5 * iso.abs().max().item())
    mask = torch.rand(3, 4, 3) > 0.5
    with torch.inference_mode():
        masked_fodf, masked_iso = net.forward_masked(x, mask)
    torch.testing.assert_close(masked_fodf[0], got_fodf[0][mask], rtol=1e-5, atol=1e-5 * fodf.abs().max().item())
    torch.testing.assert_close(masked_iso[0], got_iso[0][mask], rtol=1e-5, atol=1e-5 * iso.abs().max().item())
