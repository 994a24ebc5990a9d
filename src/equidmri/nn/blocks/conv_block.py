"""Convolution - BatchNorm - ReLU on spatio-spherical feature maps."""

from __future__ import annotations

from torch import Tensor, nn

from equidmri.nn.layers.grid import SphereGrid
from equidmri.nn.layers.spatial import IsotropicConv3d
from equidmri.nn.layers.spatio_spherical import SpatioSphericalConv


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
        y = self.conv(x)
        return self.act(self.norm(y.reshape(-1, y.shape[-1])).reshape(y.shape))
