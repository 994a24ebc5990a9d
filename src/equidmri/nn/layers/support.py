"""Masked execution: feature maps kept only on the voxels an output inside a mask depends on.

A fully convolutional network whose spatial kernels are 3x3x3 needs, for outputs on a mask M, the
features after the j-th spatial convolution counted from the output only on ``M (+) k``, the mask
dilated by k = j voxels (Chebyshev distance: the 3x3x3 cube). Voxel-wise steps (the spherical filters,
channel mixing, pooling, activations) then run on those voxels alone; a 3x3x3 convolution reads its input on
``M (+) k`` and writes its output on ``M (+) (k - 1)``. Computing everything on these sets and treating
the voxels outside as zero gives the network's outputs on M exactly: a wrong value can only arise on the
outer shell of a set, which the next convolution no longer reads.

Compact maps have the layout ``(B, V, N_k, 1, 1, C)``: the ``N_k`` voxels of ``M (+) k`` in ascending flat
(C-order) index on the X axis, so that voxel-wise layers written for ``(B, V, X, Y, Z, C)`` run on them
unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from equidmri.nn.layers.stencil import isotropic_stencil

# elements of one dense class map per chunk of vertices in `MaskSupport.spread` (64 M float32 = 256 MiB): bounds
# the stencil's dense maps on large tiles. Measured on 2 cores, 4 class maps of 384 vertices x 8 channels on a
# 24^3 tile: 0.84 s unchunked, 0.65 s in chunks of 2^26, 1.0 s of 2^24, 2.8 s of 2^22 (per-chunk indexing costs)
SPREAD_CHUNK_ELEMENTS = 2**26


class MaskSupport:
    """The voxels of a mask dilated by 0, 1, ..., ``radius`` voxels, and the maps between their layouts.

    Parameters
    ----------
    mask : Tensor, shape ``(X, Y, Z)`` bool
        Voxels where outputs are wanted; the dilations stop at the volume's border.
    radius : int
        Largest dilation (the network's receptive radius).

    Raises
    ------
    ValueError
        If ``mask`` is not 3D or ``radius`` is negative.
    """

    def __init__(self, mask: Tensor, radius: int) -> None:
        if mask.ndim != 3:
            raise ValueError(f"mask must be 3D (X, Y, Z), got shape {tuple(mask.shape)}")
        if radius < 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        self.shape = tuple(mask.shape)
        dilated = mask.to(torch.float32)[None, None]
        self.index = []  # index[k]: flat voxel indices of mask (+) k, ascending
        for k in range(radius + 1):
            if k:
                dilated = torch.nn.functional.max_pool3d(dilated, 3, stride=1, padding=1)
            self.index.append(dilated.flatten().nonzero().flatten().to(mask.device))
        self.radius = radius

    def size(self, k: int) -> int:
        """Number of voxels of ``mask (+) k``."""
        return int(self.index[k].numel())

    def compact(self, x: Tensor, k: int) -> Tensor:
        """``(B, V, X, Y, Z, C)`` -> ``(B, V, N_k, 1, 1, C)``: the values on ``mask (+) k``."""
        b, v = x.shape[:2]
        return x.reshape(b, v, -1, x.shape[-1]).index_select(2, self.index[k]).reshape(b, v, -1, 1, 1, x.shape[-1])

    def dense(self, x: Tensor, k: int) -> Tensor:
        """``(B, V, N_k, 1, 1, C)`` -> ``(B, V, X, Y, Z, C)``, zero outside ``mask (+) k``."""
        b, v, c = x.shape[0], x.shape[1], x.shape[-1]
        out = x.new_zeros(b, v, self.shape[0] * self.shape[1] * self.shape[2], c)
        out.index_copy_(2, self.index[k], x.reshape(b, v, -1, c))
        return out.reshape(b, v, *self.shape, c)

    def restrict(self, x: Tensor, k_from: int, k_to: int) -> Tensor:
        """Compact map on ``mask (+) k_from`` -> its values on the subset ``mask (+) k_to`` (``k_to <= k_from``)."""
        if k_to == k_from:
            return x
        return x.index_select(2, torch.searchsorted(self.index[k_from], self.index[k_to]))

    def spread(self, classes: Sequence[Tensor], k: int) -> Tensor:
        """The isotropic stencil of compact class maps: on ``mask (+) k`` in, on ``mask (+) (k - 1)`` out.

        Parameters
        ----------
        classes : sequence of R Tensors ``(B, V, N_k, 1, 1, C)``
            Maps per distance class (see :func:`~equidmri.nn.layers.stencil.isotropic_stencil`), R = 4.

        Returns
        -------
        Tensor, shape ``(B, V, N_{k-1}, 1, 1, C)``
            The stencil's output at the voxels of ``mask (+) (k - 1)``; the stencil runs on the dense grid, a
            chunk of vertices at a time (it acts on each vertex alone).
        """
        b, v, _, _, _, c = classes[0].shape
        step = max(1, SPREAD_CHUNK_ELEMENTS // (b * math.prod(self.shape) * c))
        out = classes[0].new_empty(b, v, self.size(k - 1), 1, 1, c)
        for start in range(0, v, step):
            part = [self.dense(m[:, start : start + step], k) for m in classes]
            out[:, start : start + step] = self.compact(isotropic_stencil(part), k - 1)
        return out
