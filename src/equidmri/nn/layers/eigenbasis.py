"""``U^T x`` and ``U y`` for the D4 symmetry-adapted eigenbasis of a grid's filter Laplacian.

``U = Q blockdiag(W)`` (``equidmri.sphere.symmetry``): Q is sparse (one shared 8 x 8 transform T for the
regular orbits, a small dense one for the vertices on symmetry axes), W has six dense blocks of about V/8,
V/8, V/8, V/8, V/4, V/4. The transforms are memory-bound, so they run over column tiles that stay in the
cache: gather a tile's rows orbit by orbit, apply T and the axis transform, then each block of W, writing
the result straight into the output (measured on 2 CPU cores at V = 384, 110592 columns: 4 passes over
untiled memory cost as much as the dense ``U^T x``). On small grids (V < ``BLOCK_MIN_VERTICES``) the
small matmuls cost more than they save, and the dense U of the same basis is used instead.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from equidmri.nn.layers.grid import SphereGrid
from equidmri.runtime import matmul
from equidmri.sphere.symmetry import BLOCKS, symmetric_eigh

TILE_ELEMENTS = 2**20  # values per (V, columns) tile, 4 MiB in float32: the fastest of 2^17..2^22 (32 MiB L3)
BLOCK_MIN_VERTICES = 384  # below (nside <= 4 on V+), one dense matmul with U is faster (measured, 2 CPU cores)


class _Transform(torch.autograd.Function):
    """``U^T x`` (``adjoint=True``) or ``U y``; U is orthogonal, so each one's adjoint is the other."""

    @staticmethod
    def forward(ctx, x: Tensor, basis: EigenbasisTransform, adjoint: bool) -> Tensor:  # noqa: D102
        ctx.basis, ctx.adjoint = basis, adjoint
        return basis.transform(x, adjoint=adjoint)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # noqa: D102
        return _Transform.apply(grad, ctx.basis, not ctx.adjoint), None, None


def orbit_vertex_order(grid: SphereGrid, sigma: float | None = None) -> Tensor | None:
    """The vertex order of the block transform's gathered layout on ``grid`` (``None`` below
    :data:`BLOCK_MIN_VERTICES`, where the dense transform needs none): position ``i`` holds vertex ``order[i]``,
    the regular orbits ``(g, orbit)`` g-major, then the vertices on symmetry axes. Maps kept in this order
    (``EigenbasisTransform(..., orbit_order=True)``) skip a gather per analysis and a scatter per synthesis."""
    if grid.n_vertices < BLOCK_MIN_VERTICES:
        return None
    basis = symmetric_eigh(grid.nside, sigma, grid.hemisphere)
    return torch.cat([torch.tensor(basis.orbit_vertices.T).reshape(-1), torch.tensor(basis.axis_vertices)])


class EigenbasisTransform(nn.Module):
    """Analysis ``U^T x`` and synthesis ``U y`` over the vertices of ``(B, V, M)`` tensors.

    Parameters
    ----------
    grid : SphereGrid
        Sphere (V) or hemisphere (V+); U diagonalises ``graph.filter_laplacian(nside, sigma, hemisphere)``.
    sigma : float, optional
        Graph kernel width (default ``0.8 / nside``).
    orbit_order : bool
        Vertex values in :func:`orbit_vertex_order`'s order instead of the grid's (on and off the same coefficients);
        only with the block transform (V >= :data:`BLOCK_MIN_VERTICES`).

    Raises
    ------
    ValueError
        If ``orbit_order`` is asked for on a grid with fewer than :data:`BLOCK_MIN_VERTICES` vertices.

    Attributes
    ----------
    eigvals : ndarray, shape ``(V,)`` float64
        Eigenvalue of each spectral coefficient (spectral order of ``symmetry.SymmetricEigenbasis``).
    """

    def __init__(self, grid: SphereGrid, sigma: float | None = None, orbit_order: bool = False) -> None:
        super().__init__()
        basis = symmetric_eigh(grid.nside, sigma, grid.hemisphere)
        self.eigvals, self.orbit_order = basis.eigvals, orbit_order
        if grid.n_vertices < BLOCK_MIN_VERTICES:
            if orbit_order:
                raise ValueError(
                    f"orbit order needs the block transform (V >= {BLOCK_MIN_VERTICES}), V = {grid.n_vertices}"
                )
            self.register_buffer("eigvecs", torch.tensor(basis.eigenvectors()), persistent=False)
            self._transform = self._dense_transform
            return
        self._transform = self._tiled_transform
        self.n_regular = basis.orbit_vertices.shape[0]
        # block k: (spectral offset, size, offset among the regular coefficients, their count, axis offset)
        starts = [sum(sizes[:k]) for sizes in (basis.block_sizes, basis.block_regular) for k in range(len(BLOCKS))]
        axis_sizes = [size - regular for size, regular in zip(basis.block_sizes, basis.block_regular)]
        self.blocks = [
            (starts[k], basis.block_sizes[k], starts[len(BLOCKS) + k], basis.block_regular[k], sum(axis_sizes[:k]))
            for k in range(len(BLOCKS))
        ]
        self.register_buffer("order", orbit_vertex_order(grid, sigma), persistent=False)  # gathered layout
        self.register_buffer("orbit_transform", torch.tensor(basis.orbit_transform), persistent=False)
        self.register_buffer("axis_transform", torch.tensor(basis.axis_transform), persistent=False)
        for k, eigvecs in enumerate(basis.block_eigvecs[:-1]):  # the E2 block reuses E1's eigenvectors
            self.register_buffer(f"block_eigvecs_{k}", torch.tensor(eigvecs), persistent=False)

    def analysis(self, x: Tensor) -> Tensor:
        """``U^T x``: ``(B, V, M)`` vertex values -> ``(B, V, M)`` coefficients in spectral order."""
        return _Transform.apply(x, self, True)

    def synthesis(self, y: Tensor) -> Tensor:
        """``U y``: ``(B, V, M)`` coefficients in spectral order -> ``(B, V, M)`` vertex values."""
        return _Transform.apply(y, self, False)

    def transform(self, x: Tensor, adjoint: bool) -> Tensor:
        """``U^T x`` (``adjoint``) or ``U x`` for ``(B, V, M)`` tensors, outside autograd."""
        return self._transform(x, adjoint)

    def _dense_transform(self, x: Tensor, adjoint: bool) -> Tensor:
        eigvecs = self.eigvecs.to(x.dtype)
        return matmul(eigvecs.T if adjoint else eigvecs, x)

    def _tiled_transform(self, x: Tensor, adjoint: bool) -> Tensor:
        n_vertices, n_regular = x.shape[1], 8 * self.n_regular
        orbit_transform, axis_transform = self.orbit_transform.to(x.dtype), self.axis_transform.to(x.dtype)
        eigvecs = [getattr(self, f"block_eigvecs_{min(k, 4)}").to(x.dtype) for k in range(len(BLOCKS))]
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        width = max(1, TILE_ELEMENTS // n_vertices)
        step = self._analysis_tile if adjoint else self._synthesis_tile
        for b in range(x.shape[0]):
            for start in range(0, x.shape[2], width):
                tile, out_tile = x[b, :, start : start + width], out[b, :, start : start + width]
                step(tile, out_tile, n_regular, orbit_transform, axis_transform, eigvecs)
        return out

    def _analysis_tile(self, tile, out, n_regular, orbit_transform, axis_transform, eigvecs) -> None:
        gathered = tile.contiguous() if self.orbit_order else tile.index_select(0, self.order)
        width = tile.shape[1]
        regular = matmul(orbit_transform, gathered[:n_regular].view(8, self.n_regular * width)).view(n_regular, width)
        axis = matmul(axis_transform.T, gathered[n_regular:])
        for (start, size, regular_start, n_block_regular, axis_start), w in zip(self.blocks, eigvecs):
            rows = out[start : start + size]
            matmul(w[:n_block_regular].T, regular[regular_start : regular_start + n_block_regular], out=rows)
            rows.addmm_(w[n_block_regular:].T, axis[axis_start : axis_start + size - n_block_regular])

    def _synthesis_tile(self, tile, out, n_regular, orbit_transform, axis_transform, eigvecs) -> None:
        width = tile.shape[1]
        regular = tile.new_empty(n_regular, width)
        axis = tile.new_empty(tile.shape[0] - n_regular, width)
        for (start, size, regular_start, n_block_regular, axis_start), w in zip(self.blocks, eigvecs):
            coefficients = tile[start : start + size]
            matmul(w[:n_block_regular], coefficients, out=regular[regular_start : regular_start + n_block_regular])
            matmul(w[n_block_regular:], coefficients, out=axis[axis_start : axis_start + size - n_block_regular])
        direct = self.orbit_order and out.is_contiguous()  # a whole map in orbit order: written in place
        gathered, shape = out if direct else tile.new_empty(tile.shape), (8, self.n_regular * width)
        matmul(orbit_transform.T, regular.view(shape), out=gathered[:n_regular].view(shape))
        matmul(axis_transform, axis, out=gathered[n_regular:])
        if self.orbit_order and not direct:
            out.copy_(gathered)
        elif not self.orbit_order:
            out.index_copy_(0, self.order, gathered)


class UnpoolingAnalysis:
    """``U^T P x``: the analysis on a grid of coarse maps ``x`` ``(B, V/4, M)`` unpooled to it (``P``, a
    :class:`~equidmri.nn.layers.pooling.SphericalUnpool`), without building ``P x`` (a decoder's input in masked
    inference, :meth:`~equidmri.nn.layers.spatio_spherical.SpatioSphericalConv.forward_parts`).

    With the block transform the product is factored as ``(U^T P W) (W^T x)``, ``W`` the coarse grid's
    symmetry-adapted eigenbasis: ``P`` commutes with the grids' D4 symmetries, so ``U^T P W`` is block-diagonal
    by D4 block (at nside 8 on V+ about 7 000 multiply-adds per column, with ``W^T x`` 16 000, against 37 000 for
    the dense ``U^T P`` and 30 000 for analysing ``P x``). Below :data:`BLOCK_MIN_VERTICES` the dense ``U^T P``.

    Parameters
    ----------
    transform : EigenbasisTransform
        The finer grid's analysis (its vertex order, orbit or grid, is the unpooling's output order).
    unpool : SphericalUnpool
    dtype, device
        Of the maps it will be applied to.
    """

    def __init__(self, transform: EigenbasisTransform, unpool: nn.Module, dtype: torch.dtype, device) -> None:
        coarse = unpool.grid.coarser()  # built in float64 on the maps' device, where the transform's buffers are
        eye = torch.eye(coarse.n_vertices, dtype=torch.float64, device=device)
        dense = transform.analysis(unpool(eye[None]))[0]  # U^T P
        self.coarse_basis, self.blocks = (
            None,
            [(0, dense.shape[0], 0, dense.shape[1], dense.to(device=device, dtype=dtype))],
        )
        if not hasattr(transform, "blocks"):  # the dense transform: no D4 blocks to follow
            return
        eigvecs = torch.tensor(symmetric_eigh(coarse.nside, None, coarse.hemisphere).eigenvectors(), device=device)
        factor = dense @ eigvecs  # (V, V/4), block-diagonal up to rounding
        nonzero = factor.abs() > 1e-9 * factor.abs().max()
        blocks = []
        for start, size, *_ in transform.blocks:
            columns = torch.nonzero(nonzero[start : start + size].any(dim=0)).flatten()
            first, last = (int(columns.min()), int(columns.max()) + 1) if len(columns) else (0, 0)
            if len(columns) != last - first:  # not a contiguous block: keep the dense product
                return
            blocks.append(
                (start, size, first, last, factor[start : start + size, first:last].to(device=device, dtype=dtype))
            )
        self.coarse_basis, self.blocks = eigvecs.T.to(device=device, dtype=dtype).contiguous(), blocks

    def __call__(self, x: Tensor) -> Tensor:
        """``(B, V/4, M)`` coarse vertex values -> ``(B, V, M)`` coefficients of their unpooling (spectral order)."""
        if self.coarse_basis is not None:
            x = matmul(self.coarse_basis, x)  # W^T x
        out = x.new_empty(x.shape[0], sum(size for _, size, *_ in self.blocks), x.shape[2])
        for start, size, first, last, block in self.blocks:
            matmul(block, x[:, first:last], out=out[:, start : start + size])
        return out
