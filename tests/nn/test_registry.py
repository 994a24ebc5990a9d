"""Tests of equidmri.nn.models.registry: model names map to configured networks."""

import pytest
import torch

from equidmri.nn.models import MODELS, SHDUNet, SHUNet, build_model

NAMES = ["cnn", "concat-esd", "esd", "mlp", "rt-esd", "shd", "shd-tv"]
# what NetworkConfig passes: every model takes it (the SH networks ignore the spherical-filter arguments)
CONFIG = dict(in_channels=2, n_iso=2, nside=4, widths=(2, 3), kernel_sizes=(3, 1), cheb_order=2, kernel="full")


@pytest.mark.parametrize(("name", "hemisphere"), [("shd", True), ("shd-tv", True), ("rt-esd", False)])
def test_build_model_fixes_the_sphere_domain(name, hemisphere):
    net = build_model(name, in_channels=2, nside=2, widths=(2, 2), kernel_sizes=(1, 1), hemisphere=not hemisphere)
    assert isinstance(net, SHDUNet)
    assert net.hemisphere is hemisphere
    assert net.grid.n_vertices == (24 if hemisphere else 48)


def test_registry_names():
    assert sorted(MODELS) == NAMES


@pytest.mark.parametrize(("name", "cls", "kernel_sizes", "radius"), [
    ("esd", SHDUNet, (1, 1), 0), ("concat-esd", SHDUNet, (1, 1), 1), ("cnn", SHUNet, (3, 1), 4),
    ("mlp", SHUNet, (1, 1), 0), ("shd", SHDUNet, (3, 1), 4)])
def test_baselines_fix_their_spatial_kernels(name, cls, kernel_sizes, radius):
    net = build_model(name, **CONFIG)
    assert type(net) is cls and net.kernel_sizes == kernel_sizes and net.receptive_radius == radius


@pytest.mark.parametrize("name", NAMES)
def test_every_model_has_the_deconvolution_interface(name):
    net = build_model(name, **CONFIG).eval()
    x = torch.rand(3, 2, 4, 3, 2, net.grid.n_vertices)
    fodf, iso = net(x)
    assert fodf.shape == (3, 4, 3, 2, net.grid.n_vertices) and iso.shape == (3, 4, 3, 2, 2)
    assert net.grid.n_vertices == (192 if name == "rt-esd" else 96)
    assert torch.all(fodf > 0) and torch.all(iso > 0)
    # the heads start near the uniform fODF of unit integral
    torch.testing.assert_close(fodf.mean(), torch.tensor(1 / (4 * torch.pi)), atol=0.02, rtol=0)


def test_concat_esd_input_block_sees_27_neighbours_per_channel():
    net = build_model("concat-esd", **CONFIG)
    assert net.encoders[0][0].conv.in_channels == 27 * 2


def test_sh_models_project_on_even_degrees_on_the_hemisphere_and_all_degrees_on_the_sphere():
    assert build_model("cnn", **CONFIG, lmax=4).n_coeffs == 15
    assert build_model("mlp", **CONFIG, lmax=4, hemisphere=False).n_coeffs == 25


def test_build_model_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"unknown model 'x'; choose from \['cnn', 'concat-esd', 'esd'"):
        build_model("x", in_channels=2)
