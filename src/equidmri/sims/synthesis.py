"""Multi-compartment diffusion signals, vectorised over voxels, and the phantom's acquisition protocol.

Each fibre population is an axially symmetric tensor (dipy ``multi_tensor``'s model, one tensor per
fibre); grey matter (GM) and cerebrospinal fluid (CSF) are isotropic. Every b-vector and fibre
direction is in the voxel-axis frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from dipy.core.sphere import HemiSphere, disperse_charges
from dipy.sims.voxel import add_noise

from equidmri.sims.defaults import DIRECTIONS_PER_SHELL, LOW_RES_DIRECTIONS, N_B0, SHELLS

REPULSION_ITERS = 300  # electrostatic repulsion steps spreading each shell's directions (dipy)
GM_DIFFUSIVITY = 0.9e-3  # mm²/s, cortical grey matter (Helenius et al., AJNR 2002); inside the GM response band
# (mask_for_response_msmt), so that the multi-tissue response estimation finds GM voxels
CSF_DIFFUSIVITY = 3.0e-3  # mm²/s, free water at body temperature
CHUNK_VOXELS = 4096  # voxels per vectorised block: 4096 × 3 fibres × 274 volumes float64 = 27 MB

__all__ = [  # the protocol defaults live in equidmri.sims.defaults (no numpy)
    "DIRECTIONS_PER_SHELL",
    "LOW_RES_DIRECTIONS",
    "N_B0",
    "SHELLS",
    "Protocol",
    "make_protocol",
    "low_resolution",
    "fibre_signal",
    "add_rician_noise",
]


@dataclass(frozen=True, eq=False)
class Protocol:
    """An acquisition: b-values (s/mm²) ``(N,)`` and unit b-vectors ``(N, 3)`` in the voxel-axis frame."""

    bvals: np.ndarray
    bvecs: np.ndarray

    def select(self, index: np.ndarray) -> Protocol:
        """The sub-protocol of the volumes ``index``."""
        return Protocol(self.bvals[index].copy(), self.bvecs[index].copy())


def _spread_directions(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` unit vectors spread over the hemisphere by repulsion from a random start."""
    start = HemiSphere(theta=np.arccos(rng.random(n)), phi=2 * np.pi * rng.random(n))
    return disperse_charges(start, REPULSION_ITERS)[0].vertices


def make_protocol(
    rng: np.random.Generator,
    *,
    n_b0: int = N_B0,
    shells: tuple[float, ...] = SHELLS,
    directions_per_shell: int = DIRECTIONS_PER_SHELL,
) -> Protocol:
    """b=0 volumes, then each shell with its own set of repulsion-spread directions.

    Returns
    -------
    Protocol
        ``n_b0 + len(shells) * directions_per_shell`` volumes (4 + 3 × 90 = 274 by default).

    Raises
    ------
    ValueError
        If a count is below 1 or a b-value is not positive.
    """
    if n_b0 < 1 or directions_per_shell < 1 or not shells or min(shells) <= 0:
        raise ValueError(
            f"needs >= 1 b=0, >= 1 direction and positive shells, got {n_b0}, {directions_per_shell}, {shells}"
        )
    bvals = np.concatenate([np.zeros(n_b0), np.repeat(np.asarray(shells, dtype=np.float64), directions_per_shell)])
    bvecs = np.concatenate([np.zeros((n_b0, 3))] + [_spread_directions(directions_per_shell, rng) for _ in shells])
    return Protocol(bvals, bvecs)


def low_resolution(protocol: Protocol, rng: np.random.Generator, n_directions: int = LOW_RES_DIRECTIONS) -> np.ndarray:
    """Indices of the b=0 volumes plus ``n_directions`` random volumes of the lowest shell (SHD paper §4.2.1).

    Returns
    -------
    ndarray, shape ``(n_b0 + n_directions,)`` int64
        Ascending; ``protocol.select(index)`` is the low angular resolution protocol.

    Raises
    ------
    ValueError
        If the lowest shell has fewer than ``n_directions`` volumes.
    """
    b0 = np.flatnonzero(protocol.bvals == 0)
    lowest = np.flatnonzero(protocol.bvals == protocol.bvals[protocol.bvals > 0].min())
    if lowest.size < n_directions:
        raise ValueError(f"the lowest shell has {lowest.size} volumes, fewer than {n_directions}")
    return np.sort(np.concatenate([b0, rng.choice(lowest, n_directions, replace=False)]))


def fibre_signal(
    protocol: Protocol,
    fibre_dirs: np.ndarray,
    fibre_fractions: np.ndarray,
    fibre_evals: np.ndarray,
    gm: np.ndarray,
    csf: np.ndarray,
    s0: float,
    *,
    gm_diffusivity: float | np.ndarray = GM_DIFFUSIVITY,
    csf_diffusivity: float | np.ndarray = CSF_DIFFUSIVITY,
) -> np.ndarray:
    """Noise-free signal of voxels made of fibres (axially symmetric tensors) and isotropic GM and CSF.

    ``S = s0 [Σ_i f_i exp(-b (λ⊥ + (λ∥ - λ⊥)(g·u_i)²)) + f_gm exp(-b D_gm) + f_csf exp(-b D_csf)]``.

    Parameters
    ----------
    protocol : Protocol
        b-values (s/mm²) and b-vectors (voxel-axis frame).
    fibre_dirs : ndarray, shape ``(M, F, 3)``
        Unit fibre directions of M voxels (any vector where the fraction is 0).
    fibre_fractions : ndarray, shape ``(M, F)``
        Volume fraction of each fibre, dimensionless.
    fibre_evals : ndarray, shape ``(M, F, 2)``
        ``(λ∥, λ⊥)`` of each fibre, mm²/s.
    gm, csf : ndarray, shape ``(M,)``
        Volume fractions of the isotropic compartments.
    s0 : float
        b=0 signal of a voxel whose fractions sum to 1, scanner units.
    gm_diffusivity, csf_diffusivity : float or ndarray, shape ``(M,)``
        Diffusivity of the isotropic compartments, mm²/s, one for all voxels or one per voxel (default:
        ``GM_DIFFUSIVITY`` and ``CSF_DIFFUSIVITY``).

    Returns
    -------
    ndarray, shape ``(M, N)`` float32
        Equal to dipy ``multi_tensor(..., snr=None)`` for the same compartments (tested).

    References
    ----------
    Basser, Mattiello & LeBihan, Biophys. J. 66, 1994 (tensor signal ``exp(-b gᵀDg)``); dipy
    ``dipy.sims.voxel.multi_tensor``.
    """
    b = protocol.bvals
    m = fibre_dirs.shape[0]
    out = np.empty((m, b.size), dtype=np.float32)
    diffusivities = np.stack([np.broadcast_to(gm_diffusivity, (m,)), np.broadcast_to(csf_diffusivity, (m,))], -1)
    for start in range(0, m, CHUNK_VOXELS):
        block = slice(start, start + CHUNK_VOXELS)
        cos2 = (fibre_dirs[block] @ protocol.bvecs.T) ** 2  # (m, F, N)
        par, perp = fibre_evals[block, :, 0, None], fibre_evals[block, :, 1, None]
        fibres = np.einsum("mf,mfn->mn", fibre_fractions[block], np.exp(-b * (perp + (par - perp) * cos2)))
        iso = np.exp(-diffusivities[block, :, None] * b)  # (m, 2, N)
        out[block] = s0 * (fibres + np.einsum("mt,mtn->mn", np.stack([gm[block], csf[block]], axis=-1), iso))
    return out


def add_rician_noise(signal: np.ndarray, snr: float | None, s0_wm: float, rng: np.random.Generator) -> np.ndarray:
    """Rician noise with σ = ``s0_wm / snr`` per real and imaginary channel (dipy ``add_noise``).

    ``snr=None`` returns the signal unchanged (float32).

    Raises
    ------
    ValueError
        If ``snr`` is not positive.
    """
    if snr is None:
        return signal.astype(np.float32)
    if snr <= 0:
        raise ValueError(f"snr must be > 0, got {snr}")
    return add_noise(signal, snr, s0_wm, noise_type="rician", rng=rng).astype(np.float32)
