"""Network inputs: b0-normalised signal, per-shell SH fits evaluated on a HEALPix grid.

As Elaldi, Gerig & Dey (NeurIPS 2024, §4 and App. C.2): normalise the DWI by the WM response's b=0
signal; fit even-order SH per shell (degree ``min(8, largest the shell's direction count supports)``)
and evaluate it on the network's grid (HEALPix V+ for SHD); the b=0 signal enters as a constant channel.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from equidmri.dmri.gradients import LMAX_CAP, Shells, max_sh_order
from equidmri.sphere.sh import sh_fit_matrix, sh_matrix

LISTED_SHELLS = 5  # shells named in the one "SH degree lowered" warning; the others are counted

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SphereSampler:
    """Linear map from the DWI volumes to the network input channels on a spherical grid.

    Attributes
    ----------
    operator : ndarray, shape ``(C, V, N)`` float64
        ``inputs[c, ..., v] = sum_n operator[c, v, n] * dwi[..., n]``; channel 0 is the mean b=0
        signal (constant over V), channel ``1 + s`` the SH fit of shell ``s`` evaluated on the grid.
    shell_lmax : tuple of int
        SH degree used for each DW shell.
    """

    operator: np.ndarray
    shell_lmax: tuple[int, ...]

    @property
    def n_channels(self) -> int:
        """C = 1 + number of DW shells."""
        return self.operator.shape[0]

    def __call__(self, dwi: np.ndarray) -> np.ndarray:
        """``(X, Y, Z, N)`` normalised DWI -> ``(C, X, Y, Z, V)`` float32 network input."""
        if dwi.ndim != 4 or dwi.shape[-1] != self.operator.shape[-1]:
            raise ValueError(f"expected a (X, Y, Z, {self.operator.shape[-1]}) DWI, got {dwi.shape}")
        flat = dwi.reshape(-1, dwi.shape[-1]).astype(np.float32, copy=False)
        operator = self.operator.astype(np.float32)
        out = np.empty((operator.shape[0],) + dwi.shape[:3] + (operator.shape[1],), dtype=np.float32)
        for channel, rows in zip(out, operator):  # one matmul per channel, written in place (no transposition)
            np.matmul(flat, rows.T, out=channel.reshape(flat.shape[0], -1))
        return out


def build_sampler(bvecs: np.ndarray, shells: Shells, vertices: np.ndarray, lmax_cap: int = LMAX_CAP) -> SphereSampler:
    """Per-shell SH interpolation of the signal onto ``vertices``.

    Parameters
    ----------
    bvecs : ndarray, shape ``(N, 3)``
        Unit b-vectors in the voxel-axis frame (b=0 rows ignored).
    shells : Shells
        Shell of each volume (``-1`` for b=0).
    vertices : ndarray, shape ``(V, 3)``
        Grid directions, same frame.
    lmax_cap : int
        Highest SH degree fitted per shell; lower when a shell has too few directions (warns).

    Returns
    -------
    SphereSampler

    Raises
    ------
    ValueError
        If there is no b=0 volume or the shapes disagree.

    References
    ----------
    Elaldi, Gerig & Dey, NeurIPS 2024, §4 (per-shell SH interpolation to HEALPix); Descoteaux et al., MRM 2007.
    """
    bvecs = np.asarray(bvecs, dtype=np.float64)
    if bvecs.ndim != 2 or bvecs.shape != (shells.index.size, 3):
        raise ValueError(f"bvecs must have shape ({shells.index.size}, 3), got {bvecs.shape}")
    b0 = shells.index < 0
    if not b0.any():
        raise ValueError("no b=0 volume: the signal cannot be normalised")
    operator = np.zeros((1 + shells.bvals.size, len(vertices), bvecs.shape[0]))
    operator[0][:, b0] = 1.0 / b0.sum()
    shell_lmax, lowered = [], []
    for s, bval in enumerate(shells.bvals):
        members = np.flatnonzero(shells.index == s)
        lmax = max_sh_order(members.size, lmax_cap)
        if lmax < lmax_cap:
            lowered.append(f"b={bval:.0f} ({members.size} directions, degree {lmax})")
        operator[1 + s][:, members] = sh_matrix(vertices, lmax, "descoteaux07") @ sh_fit_matrix(
            bvecs[members], lmax, "descoteaux07"
        )
        shell_lmax.append(lmax)
    if lowered:
        listed = ", ".join(lowered[:LISTED_SHELLS]) + (", ..." if len(lowered) > LISTED_SHELLS else "")
        warnings.warn(
            f"SH degree lowered from {lmax_cap} on {len(lowered)} of {shells.bvals.size} shell(s) with "
            f"too few directions: {listed} (b in s/mm²)",
            stacklevel=2,
        )
    logger.info("per-shell SH degrees: %s", dict(zip(shells.bvals.round().tolist(), shell_lmax)))
    return SphereSampler(operator=operator, shell_lmax=tuple(shell_lmax))
