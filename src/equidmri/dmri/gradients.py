"""Validated gradient tables, shells and the SH degree each shell supports.

Every b-vector handled here is in the *voxel-axis frame*: :mod:`equidmri.dmri.io`
converts FSL files once on load. b-values are in s/mm².
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from dipy.core.gradients import GradientTable, gradient_table, unique_bvals_tolerance

from equidmri.sphere.sh import check_lmax, n_coeffs

B0_THRESHOLD = 50.0  # s/mm², dipy's default (gradient_table b0_threshold): b <= 50 is a b=0 volume
BVEC_ATOL = 0.01  # dimensionless, dipy gradient_table atol: allowed | ||g|| - 1 | of a DW b-vector
SHELL_TOL = 20.0  # s/mm², dipy unique_bvals_tolerance default tol
MIN_SHELL_DIRECTIONS = 6  # an SH fit of degree 2 (6 coefficients) needs this many directions per shell
LMAX_CAP = 8  # SH degree cap of the per-shell signal fits (the degree of the fODF output and of dipy's CSD default)

__all__ = [
    "B0_THRESHOLD",
    "BVEC_ATOL",
    "SHELL_TOL",
    "LMAX_CAP",
    "MIN_SHELL_DIRECTIONS",
    "Shells",
    "check_gradients",
    "check_shell_sampling",
    "find_shells",
    "make_gtab",
    "max_sh_order",
]


def _check_bvals(bvals: np.ndarray) -> np.ndarray:
    bvals = np.asarray(bvals, dtype=np.float64)
    if bvals.ndim != 1:
        raise ValueError(f"bvals must have shape (N,), got {bvals.shape}")
    if not np.all(np.isfinite(bvals)):
        bad = np.flatnonzero(~np.isfinite(bvals))
        raise ValueError(f"bvals must be finite, got non-finite values at volumes {bad.tolist()}")
    if np.any(bvals < 0):
        bad = np.flatnonzero(bvals < 0)
        raise ValueError(f"bvals must be >= 0 s/mm², got {bvals[bad].tolist()} at volumes {bad.tolist()}")
    return bvals


def check_gradients(bvals: np.ndarray, bvecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a diffusion scheme and return it cleaned.

    Parameters
    ----------
    bvals : ndarray, shape ``(N,)``
        b-values in s/mm², finite and >= 0.
    bvecs : ndarray, shape ``(N, 3)``
        b-vectors in the voxel-axis frame. Rows of b=0 volumes (``bvals <= B0_THRESHOLD``) are
        ignored and may hold anything, NaN included (dipy's ``small_64D`` has a NaN row there).
        Rows of diffusion-weighted volumes must be finite and of unit norm within ``BVEC_ATOL``.

    Returns
    -------
    bvals : ndarray, shape ``(N,)`` float64
        A copy, s/mm².
    bvecs : ndarray, shape ``(N, 3)`` float64
        b=0 rows set to zero, diffusion-weighted rows renormalised to exactly unit norm.

    Raises
    ------
    ValueError
        If a shape is wrong (a ``(3, N)`` array is refused: transpose it yourself), a b-value is
        negative or not finite, there is no b=0 volume or no diffusion-weighted volume, or a
        diffusion-weighted b-vector is not finite or not of unit norm (the offending volume
        indices and norms are listed).
    """
    bvals = _check_bvals(bvals)
    bvecs = np.array(bvecs, dtype=np.float64)  # a copy: b0 rows are overwritten below
    if bvecs.shape != (bvals.shape[0], 3):
        raise ValueError(f"bvecs must have shape (N, 3) = ({bvals.shape[0]}, 3), got {bvecs.shape}")
    b0 = bvals <= B0_THRESHOLD
    if not np.any(b0):
        raise ValueError(
            f"no b=0 volume (b <= {B0_THRESHOLD} s/mm²) found; b-values range "
            f"{bvals.min():.1f}..{bvals.max():.1f} s/mm²"
        )
    if np.all(b0):
        raise ValueError(f"no diffusion-weighted volume (b > {B0_THRESHOLD} s/mm²) found among {bvals.size} volumes")
    bvecs[b0] = 0.0
    with np.errstate(invalid="ignore"):
        norms = np.linalg.norm(bvecs, axis=1)
    bad = ~b0 & ~(np.abs(norms - 1.0) <= BVEC_ATOL)  # NaN norms count as bad
    if np.any(bad):
        index = np.flatnonzero(bad)
        shown = ", ".join(f"{i}: {norms[i]:.4g}" for i in index[:20])
        more = f" (and {index.size - 20} more)" if index.size > 20 else ""
        raise ValueError(
            f"diffusion-weighted b-vectors must be finite with unit norm (tolerance {BVEC_ATOL}); "
            f"{index.size} volume(s) fail, index: norm = {shown}{more}"
        )
    bvecs[~b0] /= norms[~b0, None]
    return bvals, bvecs


def make_gtab(bvals: np.ndarray, bvecs: np.ndarray) -> GradientTable:
    """Build a dipy ``GradientTable`` after validating the scheme.

    Parameters
    ----------
    bvals : ndarray, shape ``(N,)``
        b-values, s/mm².
    bvecs : ndarray, shape ``(N, 3)``
        b-vectors in the voxel-axis frame (see :func:`check_gradients` for the rules).

    Returns
    -------
    GradientTable
        ``gradient_table(bvals, bvecs=..., b0_threshold=B0_THRESHOLD)`` with zero b=0 vectors and
        unit diffusion-weighted vectors.

    Raises
    ------
    ValueError
        As :func:`check_gradients`.
    """
    bvals, bvecs = check_gradients(bvals, bvecs)
    return gradient_table(bvals, bvecs=bvecs, b0_threshold=B0_THRESHOLD, atol=BVEC_ATOL)


@dataclass(frozen=True, eq=False)
class Shells:
    """Diffusion-weighted shells of an acquisition.

    Attributes
    ----------
    bvals : ndarray, shape ``(S,)`` float64
        b-value of each DW shell, s/mm², ascending: the mean of its member volumes.
    index : ndarray, shape ``(N,)`` int64
        Shell position of each volume, ``-1`` for b=0 volumes.
    """

    bvals: np.ndarray
    index: np.ndarray

    def __post_init__(self) -> None:
        bvals = np.array(self.bvals, dtype=np.float64)
        index = np.array(self.index, dtype=np.int64)
        if bvals.ndim != 1 or index.ndim != 1:
            raise ValueError(f"Shells needs bvals (S,) and index (N,), got {bvals.shape} and {index.shape}")
        if index.size and (index.min() < -1 or index.max() >= bvals.size):
            raise ValueError(f"shell index must lie in [-1, {bvals.size - 1}], got {index.min()}..{index.max()}")
        for name, value in (("bvals", bvals), ("index", index)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def n_directions(self) -> np.ndarray:
        """Number of volumes in each DW shell, shape ``(S,)`` int64."""
        return np.bincount(self.index[self.index >= 0], minlength=self.bvals.size).astype(np.int64)


def find_shells(bvals: np.ndarray) -> Shells:
    """Group diffusion-weighted volumes into shells.

    Shell centres come from ``dipy.core.gradients.unique_bvals_tolerance(..., tol=SHELL_TOL)`` on
    the DW b-values; each DW volume joins the nearest centre and the shell's b-value is the mean of
    its members.

    Parameters
    ----------
    bvals : ndarray, shape ``(N,)``
        b-values, s/mm²; those ``<= B0_THRESHOLD`` are b=0 volumes.

    Returns
    -------
    Shells

    Raises
    ------
    ValueError
        If ``bvals`` is not 1-D, has negative or non-finite values, or holds no DW volume.
    """
    bvals = _check_bvals(bvals)
    dw = bvals > B0_THRESHOLD
    if not np.any(dw):
        raise ValueError(f"no diffusion-weighted volume (b > {B0_THRESHOLD} s/mm²) found among {bvals.size} volumes")
    centres = np.asarray(unique_bvals_tolerance(bvals[dw], tol=SHELL_TOL), dtype=np.float64)
    # Centres are distinct data values in ascending order, so every shell keeps at least its centre
    # and nearest-centre groups are contiguous intervals: their means stay ascending.
    index = np.full(bvals.size, -1, dtype=np.int64)
    index[dw] = np.argmin(np.abs(bvals[dw, None] - centres[None, :]), axis=1)
    shell_bvals = np.array([bvals[index == s].mean() for s in range(centres.size)])
    return Shells(bvals=shell_bvals, index=index)


def check_shell_sampling(shells: Shells) -> None:
    """Refuse acquisitions whose b-values do not form shells (q-space / DSI-style sampling).

    Shell-based deconvolution fits SH per shell; a shell with fewer than ``MIN_SHELL_DIRECTIONS``
    directions supports no fODF information (degree 0 only).

    Parameters
    ----------
    shells : Shells
        From :func:`find_shells`.

    Raises
    ------
    ValueError
        If a shell has fewer than ``MIN_SHELL_DIRECTIONS`` directions; the message says whether the sampling
        looks like q-space (most shells small) or has a stray shell, and what to do.
    """
    counts = shells.n_directions
    small = counts < MIN_SHELL_DIRECTIONS
    if not small.any():
        return
    if small.sum() * 2 > small.size:
        raise ValueError(
            f"the b-values do not form shells ({small.size} distinct b-values between {shells.bvals.min():.0f} and "
            f"{shells.bvals.max():.0f} s/mm², {int(small.sum())} with fewer than {MIN_SHELL_DIRECTIONS} directions): "
            "this is q-space (DSI-style) sampling, which shell-based deconvolution cannot use; fit it with a "
            "q-space method such as dipy's GQI, SHORE or MAP-MRI"
        )
    listed = ", ".join(f"b={b:.0f} ({n} directions)" for b, n in zip(shells.bvals[small], counts[small]))
    raise ValueError(
        f"shells with fewer than {MIN_SHELL_DIRECTIONS} directions cannot be deconvolved: {listed}; "
        "remove those volumes from the DWI, bvals and bvecs"
    )


def max_sh_order(n_directions: int, lmax_cap: int = LMAX_CAP) -> int:
    """Largest even SH degree a shell with ``n_directions`` volumes determines.

    Parameters
    ----------
    n_directions : int
        Number of distinct directions of the shell, >= 1.
    lmax_cap : int
        Even upper bound on the result.

    Returns
    -------
    int
        Largest even ``l <= lmax_cap`` with ``(l+1)(l+2)/2 <= n_directions`` (0 below 6 directions).

    Raises
    ------
    TypeError
        If ``n_directions`` is not an integer.
    ValueError
        If ``n_directions < 1`` or ``lmax_cap`` is not even and >= 0.
    """
    if isinstance(n_directions, bool) or not isinstance(n_directions, (int, np.integer)):
        raise TypeError(f"n_directions must be an int, got {type(n_directions).__name__}")
    if n_directions < 1:
        raise ValueError(f"n_directions must be >= 1, got {n_directions}")
    lmax = 0
    for degree in range(2, check_lmax(lmax_cap) + 1, 2):
        if n_coeffs(degree) <= n_directions:
            lmax = degree
    return lmax
