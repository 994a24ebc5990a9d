"""Spatial-only operators of the baselines on ``(B, V, X, Y, Z, C)`` feature maps.

- :class:`IsotropicConv3d`: an E(3)-equivariant 3D convolution of channels that are scalars per voxel
  (one weight per distance class, as the spatial part of ``SpatioSphericalConv``); on SH-coefficient
  channels it is the "E(3)-SH" CNN of the SHD paper's baselines (App. C.4), with ``kernel_size=1`` its MLP.
- :func:`neighbours_as_channels`: the 3x3x3 neighbourhood of every voxel stacked on the channel axis, the
  input of Concat-ESD / Concat-SO(3) (Elaldi, Gerig & Dey, NeurIPS 2024, §4 and App. B).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from equidmri.nn.layers.spatio_spherical import KERNEL_SIZES
from equidmri.nn.layers.stencil import isotropic_stencil
from equidmri.nn.layers.support import MaskSupport, channel_parts

_SPATIAL_AXES = (2, 3, 4)  # X, Y, Z of the (B, V, X, Y, Z, C) layout


class IsotropicConv3d(nn.Module):
    """3D convolution with an isotropic kernel, shared over the vertex axis: ``(B, V, X, Y, Z, C_in) -> C_out``.

    ``out(x) = sum_{y in P(x)} W(||x - y||) in(y) + b``: one ``(C_in, C_out)`` matrix per distance class
    ({0, 1, sqrt 2, sqrt 3} for 3x3x3), 'same' zero padding. The SH baselines use V = 1.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : {1, 3}
    bias : bool

    Raises
    ------
    ValueError
        On non-positive channel counts or an unsupported kernel size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channel counts must be >= 1, got {in_channels} -> {out_channels}")
        if kernel_size not in KERNEL_SIZES:
            raise ValueError(f"kernel_size must be one of {sorted(KERNEL_SIZES)}, got {kernel_size}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        std = math.sqrt(2.0 / (in_channels * kernel_size**3))  # He initialisation
        self.weight = nn.Parameter(torch.randn(in_channels, KERNEL_SIZES[kernel_size], out_channels) * std)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 6 or x.shape[-1] != self.in_channels:
            raise ValueError(f"expected (B, V, X, Y, Z, {self.in_channels}), got {tuple(x.shape)}")
        out = isotropic_stencil(self._classes(x))
        return out if self.bias is None else out + self.bias

    def forward_on(self, x: Tensor | Sequence[Tensor], support: MaskSupport, k: int) -> Tensor:
        """Masked execution (``kernel_size=3``, inference only): ``x`` compact on ``mask (+) k`` -> output on
        ``mask (+) (k - 1)``; ``x`` may be the parts of a channel concatenation (see
        :meth:`MaskSupport.convolve`, which mixes and spreads the distance classes)."""
        out = support.convolve(channel_parts(x), self.weight.flatten(1), self.out_channels, k)
        return out if self.bias is None else out + self.bias

    def _classes(self, x: Tensor) -> list[Tensor]:
        """One ``(B, V, X, Y, Z, C_out)`` map per distance class."""
        n_classes = self.weight.shape[1]
        mixed = (x @ self.weight.reshape(self.in_channels, -1)).unflatten(-1, (n_classes, self.out_channels))
        return mixed.unbind(-2)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"


def neighbours_as_channels(x: Tensor, radius: int = 1) -> Tensor:
    """Stack the ``(2 radius + 1)^3`` neighbours of every voxel on the channel axis (zero padding).

    Parameters
    ----------
    x : Tensor, shape ``(B, V, X, Y, Z, C)``

    Returns
    -------
    Tensor, shape ``(B, V, X, Y, Z, (2 radius + 1)^3 C)``
        Channel block ``j`` holds the neighbour at offset ``itertools.product(range(-r, r + 1), repeat=3)[j]``.

    Raises
    ------
    ValueError
        If ``x`` is not 6-dimensional or ``radius`` is negative.
    """
    if x.ndim != 6 or radius < 0:
        raise ValueError(f"expected (B, V, X, Y, Z, C) and radius >= 0, got {tuple(x.shape)} and {radius}")
    nx, ny, nz = (x.shape[axis] for axis in _SPATIAL_AXES)
    padded = nn.functional.pad(x, (0, 0) + (radius, radius) * 3)  # pads Z, Y, X (last axes first after C)
    edge = 2 * radius + 1
    return torch.cat(
        [padded[:, :, i : i + nx, j : j + ny, k : k + nz] for i, j, k in itertools.product(range(edge), repeat=3)],
        dim=-1,
    )


class NeighboursAsChannels(nn.Module):
    """:func:`neighbours_as_channels` as a module, to chain before a voxel-wise layer (Concat-ESD's input)."""

    def __init__(self, radius: int = 1) -> None:
        super().__init__()
        self.radius = radius

    def forward(self, x: Tensor) -> Tensor:
        return neighbours_as_channels(x, self.radius)

    def extra_repr(self) -> str:
        return f"radius={self.radius}"
