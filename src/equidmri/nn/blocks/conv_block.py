"""Convolution - BatchNorm - ReLU on spatio-spherical feature maps, and BatchNorm folding for inference."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from equidmri.nn.layers.grid import SphereGrid
from equidmri.nn.layers.spatial import IsotropicConv3d
from equidmri.nn.layers.spatio_spherical import SpatioSphericalConv
from equidmri.nn.layers.support import MaskSupport, concatenated


class ConvBlock(nn.Module):
    """Convolution -> BatchNorm (per channel, statistics over batch, voxels and vertices) -> ReLU.

    Input and output ``(B, V, X, Y, Z, C)`` (channels last). The convolution is a ``SpatioSphericalConv`` on
    ``grid``, or, with ``grid=None``, an ``IsotropicConv3d`` of per-voxel scalars (the SH baselines, V = 1).
    BatchNorm's pooling over vertices and voxels keeps the block equivariant (SHD paper §3.3).
    """

    def __init__(self, in_channels: int, out_channels: int, grid: SphereGrid | None, **conv_kwargs) -> None:
        super().__init__()
        if grid is None:
            self.conv = IsotropicConv3d(in_channels, out_channels, bias=False, **conv_kwargs)
        else:
            self.conv = SpatioSphericalConv(in_channels, out_channels, grid, bias=False, **conv_kwargs)
        self.norm = nn.BatchNorm1d(out_channels)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self._activate(self.conv(x))

    def forward_on(self, x: Tensor | Sequence[Tensor], support: MaskSupport, k: int) -> tuple[Tensor, int]:
        """Masked execution (inference): ``x`` compact on ``mask (+) k`` -> ``(output, k')``, the output compact
        on ``mask (+) k'`` (``k' = k - 1`` after a 3x3x3 convolution, else ``k``). ``x`` may be a sequence of
        maps to be read as their concatenation along the channels (an :class:`~equidmri.nn.layers.pooling.Unpooled`
        part among them)."""
        if self.conv.kernel_size == 1:
            if isinstance(self.conv, SpatioSphericalConv) and self.conv.method == "spectral" and not torch.is_tensor(x):
                return self._activate(self.conv.forward_parts(x), inplace=True), k
            return self._activate(self.conv(concatenated(x)), inplace=True), k
        return self._activate(self.conv.forward_on(x, support, k), inplace=True), k - 1

    def _activate(self, y: Tensor, inplace: bool = False) -> Tensor:
        """BatchNorm and ReLU; ``inplace`` overwrites ``y`` (inference: saves a map-sized allocation)."""
        y = self.norm(y.reshape(-1, y.shape[-1])).reshape(y.shape)
        return torch.relu_(y) if inplace else self.act(y)


@torch.no_grad()
def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Copy of ``net`` in eval mode with every ``ConvBlock``'s BatchNorm folded into its convolution.

    In eval mode BatchNorm is the per-channel affine map ``y -> gamma (y - mean) / sqrt(var + eps) + beta``;
    the convolution is linear in its weight, so scaling the weight's output channels by
    ``s = gamma / sqrt(var + eps)`` and adding the bias ``beta - s * mean`` gives the same outputs with one
    pass less over the feature maps. ``net`` itself is not changed.
    """
    folded = copy.deepcopy(net).eval()
    for block in folded.modules():
        if not isinstance(block, ConvBlock) or isinstance(block.norm, nn.Identity):
            continue
        norm, conv = block.norm, block.conv
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        shift = norm.bias - scale * norm.running_mean
        if conv.bias is not None:
            shift = shift + scale * conv.bias
        conv.weight.mul_(scale)  # (K_cheb, C_in, R or 1, C_out): output channels last, both kernel forms
        conv.bias = nn.Parameter(shift)
        block.norm = nn.Identity()
    return folded
