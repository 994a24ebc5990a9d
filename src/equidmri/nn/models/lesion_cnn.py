"""The non-equivariant reference of the lesion experiment: a plain 3D CNN on the DWI volumes as channels.

Müller, Golkov, Tomassini & Cremers (arXiv:2102.06942, §4) compare their p×q-space network with "a 3D CNN
that treats the q-samples as channels": it sees neither the q-vectors nor a rotation of them, so a tilted
head, measured with the same protocol, reaches it with differently mixed channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DWICNN(nn.Module):
    """Voxel-wise probabilities from the DWI volumes as channels: ``(B, N, X, Y, Z) -> (B, X, Y, Z)`` in (0, 1).

    ``depth - 1`` ``Conv3d`` layers of ``width`` channels with SiLU (the swish of the equivariant network), then
    a ``Conv3d`` head to one channel and a sigmoid; padding "same".

    Parameters
    ----------
    n_volumes : int
        N, the DWI volumes of the acquisition (fixed: the network cannot take another protocol).
    width : int
    depth : int
        Convolution layers, head included (5 as the paper's equivariant network).
    kernel_size : int
        Odd.

    Raises
    ------
    ValueError
        If a size is below 1, ``depth`` below 2 or ``kernel_size`` even.
    """

    def __init__(self, n_volumes: int, width: int = 4, depth: int = 5, kernel_size: int = 3) -> None:
        super().__init__()
        if min(n_volumes, width) < 1 or depth < 2 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"need n_volumes, width >= 1, depth >= 2 and an odd kernel_size, got {n_volumes}, {width}, "
                f"{depth}, {kernel_size}"
            )
        self.n_volumes, self.width, self.depth, self.kernel_size = n_volumes, width, depth, kernel_size
        layers: list[nn.Module] = []
        channels = n_volumes
        for _ in range(depth - 1):
            layers += [nn.Conv3d(channels, width, kernel_size, padding=kernel_size // 2), nn.SiLU()]
            channels = width
        layers.append(nn.Conv3d(channels, 1, kernel_size, padding=kernel_size // 2))
        self.layers = nn.Sequential(*layers)

    def logits(self, dwi: Tensor) -> Tensor:
        """Pre-sigmoid scores ``(B, X, Y, Z)``.

        Raises
        ------
        ValueError
            If ``dwi`` is not ``(B, n_volumes, X, Y, Z)``.
        """
        if dwi.ndim != 5 or dwi.shape[1] != self.n_volumes:
            raise ValueError(f"expected dwi (B, {self.n_volumes}, X, Y, Z), got {tuple(dwi.shape)}")
        return self.layers(dwi)[:, 0]

    def forward(self, dwi: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(dwi))

    def extra_repr(self) -> str:
        return f"n_volumes={self.n_volumes}, width={self.width}, depth={self.depth}, kernel_size={self.kernel_size}"
