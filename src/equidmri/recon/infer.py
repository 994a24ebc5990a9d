"""Tiled whole-volume inference of a fully convolutional network, computed on the mask only.

Each tile is computed on the tile grown by the network's receptive radius (the halo), and within it only on
the voxels that the tile's mask voxels depend on (masked execution, :mod:`equidmri.nn.layers.support`),
so the result equals a single whole-volume pass on the mask (no dependence on the tile size) while memory
is bounded by the tile size and the cost by the dilated mask.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from tqdm.auto import tqdm

from equidmri.nn.blocks import fold_batchnorm
from equidmri.nn.models.backbone import UNetBackbone
from equidmri.recon.config import DEFAULT_TILE
from equidmri.recon.inputs import SampledInputs

__all__ = ["DEFAULT_TILE", "bounding_box", "predict_volume", "tile_grid", "tiles"]  # DEFAULT_TILE: recon.config


def tile_grid(box: tuple[slice, ...], tile: int) -> list[tuple[int, int, int]]:
    """Origins of the tiles of edge ``tile`` covering the box ``(slice_x, slice_y, slice_z)``."""
    if tile < 1:
        raise ValueError(f"tile size must be >= 1, got {tile}")
    return list(itertools.product(*(range(b.start, b.stop, tile) for b in box)))


def bounding_box(mask: Tensor) -> tuple[slice, ...]:
    """Smallest box ``(slice_x, slice_y, slice_z)`` holding every voxel of a non-empty ``mask``."""
    inside = mask.nonzero()
    return tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(inside.min(dim=0).values, inside.max(dim=0).values))


def tiles(mask: Tensor, tile: int, halo: int) -> Iterator[tuple[tuple[slice, ...], Tensor]]:
    """The tiles of ``mask``'s bounding box that hold mask voxels, each grown by ``halo`` voxels.

    Parameters
    ----------
    mask : Tensor, shape ``(X, Y, Z)`` bool
    tile : int
        Tile edge, voxels.
    halo : int
        Voxels of context added on each side (clipped to the volume).

    Yields
    ------
    grown : tuple of slice
        The tile plus its halo, in volume coordinates.
    wanted : Tensor, shape of ``grown`` bool
        The tile's own mask voxels (``False`` in the halo).
    """
    if not mask.any():
        return
    shape = tuple(mask.shape)
    box = bounding_box(mask)
    for origin in tile_grid(box, tile):
        core = tuple(slice(o, min(o + tile, b.stop)) for o, b in zip(origin, box))
        if not mask[core].any():
            continue
        grown = tuple(slice(max(c.start - halo, 0), min(c.stop + halo, n)) for c, n in zip(core, shape))
        wanted = torch.zeros(tuple(g.stop - g.start for g in grown), dtype=torch.bool)
        wanted[tuple(slice(c.start - g.start, c.stop - g.start) for c, g in zip(core, grown))] = mask[core]
        yield grown, wanted


@torch.inference_mode()
def predict_volume(
    net: UNetBackbone,
    inputs: Tensor | SampledInputs,
    mask: Tensor | None = None,
    *,
    tile: int = DEFAULT_TILE,
    progress: bool = False,
    reduce: Callable[[Tensor, Tensor, tuple[slice, ...], Tensor], tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """Run ``net`` over the voxels of ``mask``, tile by tile, computing only what those voxels depend on.

    Memory follows the tile, not the volume: ``inputs`` is read one grown tile at a time (a
    :class:`~equidmri.recon.inputs.SampledInputs` lifts only that block) and the outputs are kept for the mask
    voxels only — after ``reduce``, when given, so that a whole-brain volume never holds its fODFs on the grid
    (``(M, V)``, 1.5 KB per voxel at nside 8) but only what ``reduce`` keeps (e.g. SH coefficients).

    Parameters
    ----------
    net : UNetBackbone
        Fully convolutional network (any registered model); it runs in eval mode with its BatchNorm layers
        folded into the convolutions (:func:`~equidmri.nn.blocks.fold_batchnorm`, on a copy), through
        ``forward_masked`` (masked execution, :mod:`equidmri.nn.layers.support`).
    inputs : Tensor or SampledInputs, shape ``(C, X, Y, Z, V)``
        Indexed as ``inputs[:, sx, sy, sz]``.
    mask : Tensor, shape ``(X, Y, Z)`` bool, optional
        Voxels to deconvolve (default all). Only the mask's bounding box is tiled, tiles without a mask
        voxel are skipped, and within a tile only the mask voxels and their receptive field are computed.
    tile : int
        Tile edge in voxels (bounds the memory).
    reduce : callable, optional
        ``reduce(fodf (m, V), iso (m, T - 1), grown, wanted) -> (a (m, A), b (m, B))`` applied to each tile's
        outputs at its ``m`` wanted voxels (C order within ``grown``, see :func:`tiles`), on the net's device;
        its results are kept instead of ``fodf`` and ``iso``.

    Returns
    -------
    fodf : Tensor, shape ``(M, V)`` (``(M, A)`` with ``reduce``)
        WM fODF on the grid at the M voxels of ``mask`` (``mask.nonzero()`` order, C order), on the CPU.
    iso : Tensor, shape ``(M, T - 1)`` (``(M, B)`` with ``reduce``)
        Isotropic fractions at the same voxels.
    """
    net = fold_batchnorm(net)
    device, dtype = next(net.parameters()).device, next(net.parameters()).dtype
    shape = tuple(inputs.shape[1:4])
    mask = torch.ones(shape, dtype=torch.bool) if mask is None else mask.cpu()
    n_voxels = int(mask.sum())
    row = torch.full(shape, -1, dtype=torch.long)  # each mask voxel's row in the outputs
    row[mask] = torch.arange(n_voxels)
    outputs: list[Tensor] = []
    todo = list(tiles(mask, tile, int(net.receptive_radius)))
    for grown, wanted in tqdm(todo, desc="inference", unit="tile", disable=not progress):
        out_fodf, out_iso = net.forward_masked(
            inputs[(slice(None),) + grown].unsqueeze(0).to(device), wanted.to(device)
        )
        kept = (out_fodf[0], out_iso[0]) if reduce is None else reduce(out_fodf[0], out_iso[0], grown, wanted)
        if not outputs:  # widths known from the first tile
            outputs = [torch.zeros(n_voxels, k.shape[-1], dtype=dtype) for k in kept]
        rows = row[grown][wanted]  # the tile's mask voxels, in the C order forward_masked returns them
        for out, k in zip(outputs, kept):
            out[rows] = k.to(out.device, out.dtype)
    if not outputs:  # an empty mask
        outputs = [torch.zeros(0, inputs.shape[-1], dtype=dtype), torch.zeros(0, net.n_iso, dtype=dtype)]
    return outputs[0], outputs[1]
