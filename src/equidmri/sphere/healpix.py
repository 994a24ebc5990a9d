"""HEALPix pixel centres in NESTED ordering (healpy), antipodes and exact grid symmetries.

NESTED ordering gives the pooling hierarchy: the parent of pixel ``c`` at ``nside // 2`` is ``c // 4``.
healpy is imported on first use: it loads matplotlib and astropy (about 1 s), which ``equidmri <command>
--help`` should not wait for.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SYMMETRY_ATOL = 1e-9  # max distance between a rotated centre and its image pixel for an exact symmetry


def check_nside(nside: int) -> int:
    """Return ``nside`` if it is a power of two >= 1, else raise ``ValueError``."""
    if isinstance(nside, bool) or not isinstance(nside, (int, np.integer)) or nside < 1 or nside & (nside - 1):
        raise ValueError(f"nside must be a power of two >= 1, got {nside!r}")
    return int(nside)


def npix(nside: int) -> int:
    """Number of HEALPix pixels, ``12 * nside**2`` (nside 8 -> 768)."""
    return 12 * check_nside(nside) ** 2


@lru_cache(maxsize=16)
def _centres(nside: int) -> np.ndarray:
    import healpy as hp  # noqa: PLC0415 (deferred: see the module docstring)

    vectors = np.array(hp.pix2vec(nside, np.arange(npix(nside)), nest=True)).T
    vectors.setflags(write=False)
    return vectors


def pixel_centres(nside: int) -> np.ndarray:
    """Unit vectors of the pixel centres, shape ``(12 nside^2, 3)`` float64, NESTED order (read-only)."""
    return _centres(check_nside(nside))


def pixel_of(nside: int, directions: np.ndarray) -> np.ndarray:
    """NESTED index of the pixel containing each direction, shape ``(M,)`` int64."""
    import healpy as hp  # noqa: PLC0415 (deferred: see the module docstring)

    directions = np.asarray(directions, dtype=np.float64)
    return np.asarray(hp.vec2pix(check_nside(nside), *directions.T, nest=True), dtype=np.int64)


@lru_cache(maxsize=16)
def _antipodes(nside: int) -> np.ndarray:
    index = pixel_of(nside, -pixel_centres(nside))
    index.setflags(write=False)
    return index


def antipode_index(nside: int) -> np.ndarray:
    """Index of the antipodal pixel of each pixel, shape ``(npix,)`` int64 (an involution)."""
    return _antipodes(check_nside(nside))


def symmetry_permutation(nside: int, rotation: np.ndarray) -> np.ndarray:
    """Pixel permutation realising an orthogonal map that sends HEALPix centres onto centres.

    ``x[..., perm]`` is the signal ``x`` carried by ``rotation``: ``(x[perm])(v) = x(R^T v)``.

    Raises
    ------
    ValueError
        If ``rotation`` does not map the NESTED centres exactly onto themselves (e.g. a 90° turn about x).
    """
    centres = pixel_centres(nside)
    source = centres @ np.asarray(rotation, dtype=np.float64)  # row v: R^T v
    perm = pixel_of(nside, source)
    if np.abs(centres[perm] - source).max() > SYMMETRY_ATOL:
        raise ValueError("rotation is not a symmetry of the HEALPix grid")
    return perm
