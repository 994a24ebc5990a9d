"""HEALPix pooling and unpooling on V or V+ (NESTED hierarchy; SHD paper §3.3).

The vertex axis is axis 1, as in the networks' ``(B, V, X, Y, Z, C)`` layout.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from equidmri.nn.layers.grid import SphereGrid


class SphericalPool(nn.Module):
    """Mean over the 4 NESTED children: ``(B, V, ...)`` at nside -> ``(B, V/4, ...)`` at nside/2."""

    def __init__(self, grid: SphereGrid) -> None:
        super().__init__()
        self.grid = grid
        self.register_buffer("index", torch.as_tensor(grid.pool_index()), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.grid.n_vertices:
            raise ValueError(f"expected {self.grid.n_vertices} vertices on axis 1, got {x.shape[1]}")
        return x.index_select(1, self.index.flatten()).unflatten(1, self.index.shape).mean(dim=2)

    def extra_repr(self) -> str:
        return f"nside={self.grid.nside}->{self.grid.nside // 2}, hemisphere={self.grid.hemisphere}"


class SphericalUnpool(nn.Module):
    """Copy each parent to its children: ``(B, V/4, ...)`` at nside/2 -> ``(B, V, ...)`` at nside."""

    def __init__(self, grid: SphereGrid) -> None:
        super().__init__()
        self.grid = grid
        self.register_buffer("index", torch.as_tensor(grid.unpool_index()), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.grid.coarser().n_vertices:
            raise ValueError(f"expected {self.grid.coarser().n_vertices} vertices on axis 1, got {x.shape[1]}")
        return x.index_select(1, self.index)

    def extra_repr(self) -> str:
        return f"nside={self.grid.nside // 2}->{self.grid.nside}, hemisphere={self.grid.hemisphere}"
