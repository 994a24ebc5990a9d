"""The network input of a whole volume, computed block by block when indexed.

The input holds ``C * V`` values per voxel (1 + shells channels on the grid: 1536 at nside 8 with three
shells), several times the DWI's own ``N``; lifted up front, a 145 × 174 × 145 volume would need about
22 GB for it alone. :class:`SampledInputs` keeps the normalised DWI and lifts each training patch or
inference tile when it is read, so memory follows the block.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from equidmri.dmri.preprocess import SphereSampler


class SampledInputs:
    """Network input ``(C, X, Y, Z, V)`` of a normalised DWI, lifted by ``sampler`` block by block.

    Parameters
    ----------
    dwi : ndarray, shape ``(X, Y, Z, N)`` float32
        DWI divided by the WM b=0 response (dimensionless), volumes in the sampler's order.
    sampler : SphereSampler
        Per-shell SH interpolation onto the network's grid (:func:`equidmri.dmri.preprocess.build_sampler`).

    Raises
    ------
    ValueError
        If ``dwi`` is not 4D with the sampler's ``N`` volumes.
    """

    def __init__(self, dwi: np.ndarray, sampler: SphereSampler) -> None:
        n_volumes = sampler.operator.shape[-1]
        if dwi.ndim != 4 or dwi.shape[-1] != n_volumes:
            raise ValueError(f"expected a (X, Y, Z, {n_volumes}) DWI, got {dwi.shape}")
        self.dwi, self.sampler = dwi, sampler
        self.shape = (sampler.n_channels, *dwi.shape[:3], sampler.operator.shape[1])

    def __getitem__(self, index: tuple[slice, ...]) -> Tensor:
        """``inputs[:, sx, sy, sz]`` -> ``(C, x, y, z, V)`` float32 tensor of that block (basic slices only)."""
        basic = isinstance(index, tuple) and len(index) == 4 and all(isinstance(s, slice) for s in index)
        if not basic or index[0] != slice(None):
            raise IndexError(f"index with (slice(None), slice_x, slice_y, slice_z), got {index}")
        return torch.from_numpy(self.sampler(self.dwi[index[1:]]))

    def signal(self, block: tuple[slice, ...], voxels: np.ndarray) -> Tensor:
        """The normalised DWI ``(M, N)`` at the ``voxels`` (bool, the block's shape) of ``block = (sx, sy, sz)``."""
        return torch.from_numpy(self.dwi[block][voxels])

    def b0(self, signal: Tensor) -> Tensor:
        """Channel 0 (the mean b=0 signal, the same at every vertex) of a normalised ``signal (..., N)``: ``(...)``."""
        return signal @ torch.from_numpy(self.sampler.operator[0, 0].astype(np.float32)).to(signal.device)
