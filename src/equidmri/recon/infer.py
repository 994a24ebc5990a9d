"""Tiled whole-volume inference of a fully convolutional network.

Each tile is computed on the tile grown by the network's receptive radius (the halo) and cropped back,
so the result equals a single whole-volume pass (no dependence on the tile size) while memory is bounded
by the tile size.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from equidmri.nn.blocks import fold_batchnorm

# voxels per tile edge; bounds the peak memory of inference, about 200 KB per voxel of the grown tile at nside 8
# with the default widths (measured: 2.9 GB for one 24^3 tile)
DEFAULT_TILE = 24


def tile_grid(box: tuple[slice, ...], tile: int) -> list[tuple[int, int, int]]:
    """Origins of the tiles of edge ``tile`` covering the box ``(slice_x, slice_y, slice_z)``."""
    if tile < 1:
        raise ValueError(f"tile size must be >= 1, got {tile}")
    return list(itertools.product(*(range(b.start, b.stop, tile) for b in box)))


def bounding_box(mask: Tensor) -> tuple[slice, ...]:
    """Smallest box ``(slice_x, slice_y, slice_z)`` holding every voxel of a non-empty ``mask``."""
    inside = mask.nonzero()
    return tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(inside.min(dim=0).values, inside.max(dim=0).values))


@torch.inference_mode()
def predict_volume(
    net: nn.Module,
    inputs: Tensor,
    mask: Tensor | None = None,
    *,
    tile: int = DEFAULT_TILE,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Run ``net`` over the whole volume, tile by tile.

    Parameters
    ----------
    net : nn.Module
        Fully convolutional network with a ``receptive_radius`` attribute (voxels); it runs in eval mode
        with its BatchNorm layers folded into the convolutions (:func:`~equidmri.nn.blocks.fold_batchnorm`,
        on a copy).
    inputs : Tensor, shape ``(C, X, Y, Z, V)``
    mask : Tensor, shape ``(X, Y, Z)`` bool, optional
        Only the mask's bounding box is tiled, and tiles without a mask voxel are skipped (left at zero).
    tile : int
        Tile edge in voxels.

    Returns
    -------
    fodf : Tensor, shape ``(X, Y, Z, V)``
        WM fODF on the grid, on the CPU.
    iso : Tensor, shape ``(X, Y, Z, T - 1)``
        Isotropic fractions.
    """
    net = fold_batchnorm(net)
    device = next(net.parameters()).device
    halo = int(net.receptive_radius)
    shape = tuple(inputs.shape[1:4])
    fodf = inputs.new_zeros(shape + (inputs.shape[-1],))
    iso = inputs.new_zeros(shape + (net.n_iso,))
    box = bounding_box(mask) if mask is not None and mask.any() else tuple(slice(0, n) for n in shape)
    for origin in tqdm(tile_grid(box, tile), desc="inference", unit="tile", disable=not progress):
        core = tuple(slice(o, min(o + tile, b.stop)) for o, b in zip(origin, box))
        if mask is not None and not mask[core].any():
            continue
        grown = tuple(slice(max(c.start - halo, 0), min(c.stop + halo, n)) for c, n in zip(core, shape))
        crop = tuple(slice(c.start - g.start, c.stop - g.start) for c, g in zip(core, grown))
        out_fodf, out_iso = net(inputs[(slice(None),) + grown].unsqueeze(0).to(device))
        fodf[core] = out_fodf[0][crop].to(fodf.device)
        iso[core] = out_iso[0][crop].to(iso.device)
    return fodf, iso
