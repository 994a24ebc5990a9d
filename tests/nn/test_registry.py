"""Tests of equidmri.nn.models.registry: model names map to configured networks."""

import pytest
import torch

from equidmri.nn.blocks import fold_batchnorm
from equidmri.nn.models import MODELS, SHDUNet, SHUNet, backbone, build_model

NAMES = ["cnn", "concat-esd", "esd", "mlp", "rt-esd", "shd"]
# what NetworkConfig passes: every model takes it (the SH networks ignore the spherical-filter arguments)
CONFIG = dict(in_channels=2, n_iso=2, nside=4, widths=(2, 3), kernel_sizes=(3, 1), cheb_order=2, kernel="full")


@pytest.mark.parametrize(("name", "hemisphere"), [("shd", True), ("rt-esd", False)])
def test_build_model_fixes_the_sphere_domain(name, hemisphere):
    net = build_model(name, in_channels=2, nside=2, widths=(2, 2), kernel_sizes=(1, 1), hemisphere=not hemisphere)
    assert isinstance(net, SHDUNet)
    assert net.hemisphere is hemisphere
    assert net.grid.n_vertices == (24 if hemisphere else 48)


def test_registry_names():
    assert sorted(MODELS) == NAMES


@pytest.mark.parametrize(
    ("name", "cls", "kernel_sizes", "radius"),
    [
        ("esd", SHDUNet, (1, 1), 0),
        ("concat-esd", SHDUNet, (1, 1), 1),
        ("cnn", SHUNet, (3, 1), 4),
        ("mlp", SHUNet, (1, 1), 0),
        ("shd", SHDUNet, (3, 1), 4),
    ],
)
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


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kernel_sizes", [(3, 1), (3, 3)])
def test_masked_execution_equals_the_dense_pass_on_the_mask(name, kernel_sizes, float64):
    net = build_model(name, **{**CONFIG, "widths": (3, 4), "kernel_sizes": kernel_sizes})
    with torch.no_grad():  # generic BatchNorm parameters and statistics, folded as in inference
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.weight.add_(torch.randn_like(module.weight) * 0.1)
                module.bias.copy_(torch.randn_like(module.bias) * 0.1)
                module.running_mean.copy_(torch.randn_like(module.running_mean) * 0.1)
                module.running_var.copy_(torch.rand_like(module.running_var) + 0.5)
        net.head.weight.mul_(100.0)  # undo the head's small initialisation: outputs that vary
    net = fold_batchnorm(net)
    x = torch.randn(1, 2, 9, 8, 7, net.grid.n_vertices)
    mask = torch.rand(9, 8, 7) < 0.1
    mask[4, 0, 6] = True  # on the border
    with torch.no_grad():
        fodf, iso = net(x)
        masked_fodf, masked_iso = net.forward_masked(x, mask)
    assert masked_fodf.shape == (1, int(mask.sum()), net.grid.n_vertices)
    assert fodf[0][mask].std() > 1e-3  # a generic output
    torch.testing.assert_close(masked_fodf[0], fodf[0][mask], atol=1e-12, rtol=0)
    torch.testing.assert_close(masked_iso[0], iso[0][mask], atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["esd", "mlp"])
def test_a_voxelwise_network_in_chunks_on_threads_gives_the_one_pass_result(name, monkeypatch):
    net = build_model(name, **CONFIG)
    with torch.no_grad():
        net.head.weight.mul_(100.0)
    net = fold_batchnorm(net)
    assert net.receptive_radius == 0
    x = torch.randn(1, 2, 9, 8, 7, net.grid.n_vertices)
    mask = torch.rand(9, 8, 7) < 0.5
    threads = torch.get_num_threads()
    with torch.inference_mode():
        whole = net.forward_masked(x, mask)  # fewer voxels than VOXEL_CHUNK: one pass
        monkeypatch.setattr(backbone, "VOXEL_CHUNK", 16)
        try:
            torch.set_num_threads(2)
            chunked = net.forward_masked(x, mask)
        finally:
            torch.set_num_threads(threads)
    assert int(mask.sum()) > 3 * 16 and whole[0].std() > 1e-3
    torch.testing.assert_close(chunked[0], whole[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(chunked[1], whole[1], atol=1e-6, rtol=1e-5)
