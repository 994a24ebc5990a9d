"""Spherical grids the layers work on: the HEALPix sphere V or its hemisphere V+ at one nside."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from equidmri.sphere.healpix import check_nside, npix, pixel_centres
from equidmri.sphere.hemisphere import hemisphere_pixels, representative


@dataclass(frozen=True)
class SphereGrid:
    """HEALPix pixels at ``nside``: all of them (``hemisphere=False``, RT-ESD) or V+ (``True``, SHD)."""

    nside: int
    hemisphere: bool = True

    def __post_init__(self) -> None:
        check_nside(self.nside)

    @cached_property
    def pixels(self) -> np.ndarray:
        """NESTED indices of the grid's pixels, shape ``(V,)`` int64."""
        return hemisphere_pixels(self.nside) if self.hemisphere else np.arange(npix(self.nside))

    @cached_property
    def position(self) -> np.ndarray:
        """Grid position holding each full-sphere pixel's value, shape ``(npix,)`` (V+ representative)."""
        return representative(self.nside) if self.hemisphere else np.arange(npix(self.nside))

    @property
    def n_vertices(self) -> int:
        """V: 12 nside² on the sphere, half of that on V+."""
        return int(self.pixels.size)

    @property
    def vertices(self) -> np.ndarray:
        """Unit vectors of the grid's pixels, shape ``(V, 3)`` float64."""
        return pixel_centres(self.nside)[self.pixels]

    def coarser(self) -> SphereGrid:
        """The grid at ``nside // 2`` (raises ``ValueError`` at nside 1)."""
        if self.nside == 1:
            raise ValueError("nside 1 has no coarser HEALPix grid")
        return SphereGrid(self.nside // 2, self.hemisphere)

    def pool_index(self) -> np.ndarray:
        """For each pixel of the coarser grid, the positions of its 4 NESTED children, shape ``(V/4, 4)``.

        On V+ a child outside V+ is read through its antipode (exact for symmetric signals; Elaldi, Gerig &
        Dey, NeurIPS 2024, App. A.1).
        """
        parents = self.coarser().pixels
        children = 4 * parents[:, None] + np.arange(4)[None, :]
        return self.position[children]

    def unpool_index(self) -> np.ndarray:
        """For each pixel of this grid, the coarser-grid position of its parent, shape ``(V,)``."""
        return self.coarser().position[self.pixels // 4]
