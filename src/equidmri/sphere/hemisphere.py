"""The HEALPix hemisphere V+ and the map from every pixel to its V+ representative.

V+ (Elaldi et al., NeurIPS 2024, App. A.1): z > 0; on z = 0, y > 0; on z = y = 0, x > 0. It holds exactly
one pixel of every antipodal pair, so an antipodally symmetric signal on the full sphere is determined by
its values on V+.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from equidmri.sphere.healpix import antipode_index, check_nside, pixel_centres

EQUATOR_ATOL = 1e-12  # |z| below this counts as the equator (HEALPix centres are exact to ~1e-16)


def in_hemisphere(directions: np.ndarray) -> np.ndarray:
    """Boolean mask, shape ``(V,)``, of the directions that belong to V+ (rule above)."""
    x, y, z = np.asarray(directions, dtype=np.float64).T
    on_equator = np.abs(z) <= EQUATOR_ATOL
    on_axis = on_equator & (np.abs(y) <= EQUATOR_ATOL)
    return (z > EQUATOR_ATOL) | (on_equator & (y > EQUATOR_ATOL)) | (on_axis & (x > 0))


@lru_cache(maxsize=16)
def _hemisphere(nside: int) -> tuple[np.ndarray, np.ndarray]:
    keep = in_hemisphere(pixel_centres(nside))
    pixels = np.flatnonzero(keep)
    position = np.full(keep.size, -1, dtype=np.int64)
    position[pixels] = np.arange(pixels.size)
    representative = np.where(keep, position, position[antipode_index(nside)])
    for array in (pixels, representative):
        array.setflags(write=False)
    return pixels, representative


def hemisphere_pixels(nside: int) -> np.ndarray:
    """NESTED indices of the V+ pixels, ascending, shape ``(npix / 2,)`` int64 (nside 8 -> 384)."""
    return _hemisphere(check_nside(nside))[0]


def representative(nside: int) -> np.ndarray:
    """For every full-sphere pixel, the position in V+ of itself or of its antipode, shape ``(npix,)``."""
    return _hemisphere(check_nside(nside))[1]


def hemisphere_centres(nside: int) -> np.ndarray:
    """Unit vectors of the V+ pixels, shape ``(npix / 2, 3)`` float64."""
    return pixel_centres(nside)[hemisphere_pixels(nside)]
