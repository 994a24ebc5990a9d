"""Tests of equidmri.nn.layers.spatial: isotropic 3D convolution and neighbours as channels."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from equidmri.nn.layers import IsotropicConv3d, neighbours_as_channels


def test_isotropic_conv_equals_conv3d_with_a_distance_class_kernel(float64):
    conv = IsotropicConv3d(2, 3)
    kernel = torch.zeros(3, 2, 3, 3, 3)
    for d in itertools.product(range(3), repeat=3):
        kernel[(slice(None), slice(None)) + d] = conv.weight[:, sum((i - 1) ** 2 for i in d), :].T
    x = torch.randn(2, 1, 4, 3, 5, 2)
    expected = F.conv3d(x[:, 0].permute(0, 4, 1, 2, 3), kernel, padding=1).permute(0, 2, 3, 4, 1)[:, None]
    torch.testing.assert_close(conv(x), expected + conv.bias, atol=1e-12, rtol=0)


def test_isotropic_conv_commutes_with_a_quarter_turn(float64):
    conv = IsotropicConv3d(2, 2)
    x = torch.randn(1, 3, 4, 4, 4, 2)
    turn = lambda t: torch.rot90(t, 1, dims=(2, 4))  # noqa: E731
    torch.testing.assert_close(conv(turn(x)), turn(conv(x)), atol=1e-12, rtol=0)


def test_neighbours_as_channels_stacks_the_shifted_volumes_with_zero_padding():
    x = torch.randn(1, 2, 3, 4, 5, 2)
    y = neighbours_as_channels(x)
    assert y.shape == (1, 2, 3, 4, 5, 54)
    for j, (i, k, m) in enumerate(itertools.product((-1, 0, 1), repeat=3)):
        shifted = torch.roll(x, shifts=(-i, -k, -m), dims=(2, 3, 4))
        inside = (slice(1, -1),) * 3  # voxels whose every neighbour exists
        torch.testing.assert_close(y[:, :, 1:-1, 1:-1, 1:-1, 2 * j : 2 * j + 2], shifted[(slice(None),) * 2 + inside])
    assert torch.all(y[:, :, 0, :, :, :2] == 0)  # the (-1, -1, -1) neighbour of the first x slice is padding


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="kernel_size"):
        IsotropicConv3d(1, 1, kernel_size=5)
    with pytest.raises(ValueError, match="expected"):
        IsotropicConv3d(2, 1)(torch.zeros(1, 1, 2, 2, 2, 3))
    with pytest.raises(ValueError, match="radius"):
        neighbours_as_channels(torch.zeros(1, 1, 2, 2, 2, 1), radius=-1)
