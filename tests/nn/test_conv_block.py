"""Tests of equidmri.nn.blocks.ConvBlock: conv -> BatchNorm pooled over batch, voxels, vertices -> ReLU."""

import numpy as np
import pytest
import torch

from equidmri.nn.blocks import ConvBlock, fold_batchnorm
from equidmri.nn.layers import SphereGrid
from equidmri.nn.models import SHDUNet
from equidmri.sphere import healpix

ROT_Z_90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def _randomise_statistics(block):
    with torch.no_grad():
        block.norm.running_mean.copy_(torch.randn_like(block.norm.running_mean))
        block.norm.running_var.copy_(torch.rand_like(block.norm.running_var) + 0.5)
        block.norm.weight.copy_(torch.randn_like(block.norm.weight))
        block.norm.bias.copy_(torch.randn_like(block.norm.bias))
    return block


def test_train_mode_normalises_each_channel_over_batch_vertices_and_voxels(float64):
    block = ConvBlock(2, 3, SphereGrid(2))
    x = torch.randn(2, 24, 3, 2, 2, 2)
    y = block.conv(x)
    mean = y.mean(dim=(0, 1, 2, 3, 4))
    var = y.var(dim=(0, 1, 2, 3, 4), unbiased=False)
    expected = torch.relu((y - mean) / torch.sqrt(var + block.norm.eps))  # BatchNorm starts at weight 1, bias 0
    torch.testing.assert_close(block.train()(x), expected, atol=1e-12, rtol=0)


def test_eval_mode_applies_the_running_statistics(float64):
    block = _randomise_statistics(ConvBlock(2, 3, SphereGrid(2))).eval()
    x = torch.randn(1, 24, 2, 2, 3, 2)
    norm = block.norm
    y = block.conv(x)
    expected = torch.relu((y - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps) * norm.weight + norm.bias)
    torch.testing.assert_close(block(x), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("train", (True, False))
def test_block_commutes_with_a_joint_quarter_turn(train, float64):
    block = _randomise_statistics(ConvBlock(2, 3, SphereGrid(2))).train(train)
    grid = block.conv.grid
    perm = torch.tensor(grid.position[healpix.symmetry_permutation(2, ROT_Z_90)[grid.pixels]])
    x = torch.randn(2, 24, 3, 3, 2, 2)
    turned = torch.rot90(x[:, perm], 1, dims=(2, 3))
    torch.testing.assert_close(block(turned), torch.rot90(block(x), 1, dims=(2, 3))[:, perm], atol=1e-10, rtol=0)


def test_block_conv_has_no_bias_and_state_dict_round_trips():
    block = _randomise_statistics(ConvBlock(2, 3, SphereGrid(2), cheb_order=3))
    assert block.conv.bias is None
    assert set(block.state_dict()) == {
        "conv.weight",
        "norm.weight",
        "norm.bias",
        "norm.running_mean",
        "norm.running_var",
        "norm.num_batches_tracked",
    }
    fresh = ConvBlock(2, 3, SphereGrid(2), cheb_order=3)
    fresh.load_state_dict(block.state_dict())
    x = torch.randn(1, 24, 2, 2, 2, 2)
    torch.testing.assert_close(fresh.eval()(x), block.eval()(x), atol=0, rtol=0)
    torch.testing.assert_close(block.double()(x.double()), fresh(x).double(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kernel", ["full", "rank1"])
def test_folded_batchnorm_gives_the_eval_outputs_of_the_block(kernel):
    block = _randomise_statistics(ConvBlock(3, 4, SphereGrid(2, hemisphere=True), kernel=kernel)).eval()
    x = torch.randn(1, 24, 3, 3, 3, 3)
    folded = fold_batchnorm(block)
    assert isinstance(folded.norm, torch.nn.Identity) and isinstance(block.norm, torch.nn.BatchNorm1d)
    torch.testing.assert_close(folded(x), block(x), rtol=1e-5, atol=1e-6)


def test_folding_a_unet_keeps_its_outputs_and_leaves_the_original_alone():
    net = SHDUNet(2, n_iso=2, nside=4, widths=(4, 4, 4), kernel_sizes=(3, 1, 1))
    for block in net.modules():
        if isinstance(block, ConvBlock):
            _randomise_statistics(block)
    net.eval()
    x = torch.rand(1, 2, 5, 5, 5, net.grid.n_vertices)
    before = [p.clone() for p in net.parameters()]
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in folded.modules())
    for got, expected in zip(folded(x), net(x)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
