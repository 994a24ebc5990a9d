"""HEALPix pooling and unpooling on V or V+ (NESTED hierarchy; SHD paper §3.3).

The vertex axis is axis 1, as in the networks' ``(B, V, X, Y, Z, C)`` layout.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from equidmri.nn.layers.grid import SphereGrid


class SphericalPool(nn.Module):
    """Mean over the 4 NESTED children: ``(B, V, ...)`` at nside -> ``(B, V/4, ...)`` at nside/2.

    ``order``, optional: the input's vertex axis holds grid vertex ``order[i]`` at position ``i`` (e.g. the orbit
    order of :func:`~equidmri.nn.layers.eigenbasis.orbit_vertex_order`); default the grid's order.
    """

    def __init__(self, grid: SphereGrid, order: Tensor | None = None) -> None:
        super().__init__()
        self.grid = grid
        index = torch.as_tensor(grid.pool_index())
        if order is not None:  # the fine map's vertex i is grid vertex order[i]
            index = torch.argsort(order)[index]
        self.register_buffer("index", index, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.grid.n_vertices:
            raise ValueError(f"expected {self.grid.n_vertices} vertices on axis 1, got {x.shape[1]}")
        return x.index_select(1, self.index.flatten()).unflatten(1, self.index.shape).mean(dim=2)

    def extra_repr(self) -> str:
        return f"nside={self.grid.nside}->{self.grid.nside // 2}, hemisphere={self.grid.hemisphere}"


class SphericalUnpool(nn.Module):
    """Copy each parent to its children: ``(B, V/4, ...)`` at nside/2 -> ``(B, V, ...)`` at nside.

    ``order``, optional: the output's vertex axis holds grid vertex ``order[i]`` at position ``i``; default the
    grid's order.
    """

    def __init__(self, grid: SphereGrid, order: Tensor | None = None) -> None:
        super().__init__()
        self.grid = grid
        index = torch.as_tensor(grid.unpool_index())
        self.register_buffer("index", index if order is None else index[order], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.grid.coarser().n_vertices:
            raise ValueError(f"expected {self.grid.coarser().n_vertices} vertices on axis 1, got {x.shape[1]}")
        return x.index_select(1, self.index)

    def extra_repr(self) -> str:
        return f"nside={self.grid.nside // 2}->{self.grid.nside}, hemisphere={self.grid.hemisphere}"


class Unpooled(NamedTuple):
    """A coarse map and the unpooling that lifts it to the finer grid, not yet applied.

    A decoder's unpooled input in masked inference: a voxel-wise spectral convolution reads its spectrum straight
    from the coarse map (:meth:`~equidmri.nn.layers.spatio_spherical.SpatioSphericalConv.forward_parts`), and
    anything else asks for :meth:`materialise`.
    """

    coarse: Tensor  # (B, V/4, ..., C) at nside/2
    unpool: nn.Module  # SphericalUnpool, or nn.Identity on one-vertex (SH) maps

    def materialise(self) -> Tensor:
        """The unpooled map ``(B, V, ..., C)``."""
        return self.unpool(self.coarse)
