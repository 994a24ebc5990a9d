"""Per-shell spherical harmonics of the diffusion attenuation: the space in which SH-based harmonizers work.

The attenuation ``E = S / S0`` (``S0`` the voxel's mean b=0 signal) of each shell is fitted with even-degree SH
(``descoteaux07``, least squares, :func:`equidmri.sphere.sh.sh_fit_matrix`) at the degree the shell's direction
count supports (:func:`equidmri.dmri.gradients.max_sh_order`), and evaluated at another protocol's directions.
Rotation-invariant SH (RISH) features are the energies ``Σ_m c_lm²`` of each even degree ``l``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from equidmri.dmri.gradients import LMAX_CAP, SHELL_TOL, find_shells, max_sh_order
from equidmri.sphere.sh import degrees, sh_fit_matrix, sh_matrix

SH_BASIS = "descoteaux07"

__all__ = ["ShellPair", "attenuation", "match_shells", "mean_b0", "rish_features"]


def mean_b0(dwi: np.ndarray, bvals: np.ndarray) -> np.ndarray:
    """Mean of the b=0 volumes, ``(X, Y, Z)`` float64.

    Raises
    ------
    ValueError
        If no volume has b <= ``B0_THRESHOLD`` or the volume count differs from ``bvals``.
    """
    if dwi.shape[-1] != len(bvals):
        raise ValueError(f"dwi has {dwi.shape[-1]} volumes but bvals has {len(bvals)}")
    b0 = find_shells(bvals).index < 0
    if not b0.any():
        raise ValueError("no b=0 volume: the attenuation S / S0 is undefined")
    return dwi[..., b0].astype(np.float64).mean(axis=-1)


def attenuation(dwi: np.ndarray, bvals: np.ndarray) -> np.ndarray:
    """Diffusion attenuation ``S / S0`` of every volume, ``(X, Y, Z, N)`` float64, 0 where ``S0 <= 0``.

    Raises
    ------
    ValueError
        As :func:`mean_b0`.
    """
    s0 = mean_b0(dwi, bvals)[..., None]
    return np.divide(dwi, s0, out=np.zeros(dwi.shape), where=s0 > 0)


@dataclass(frozen=True, eq=False)
class ShellPair:
    """One shell acquired on two protocols: the source volumes, the target volumes and the SH operators.

    Attributes
    ----------
    bval : float
        Nominal b-value of the target shell, s/mm².
    source, target : ndarray of int
        Volume indices of the shell in the source and target protocols.
    lmax : int
        Even SH degree: the largest both direction counts support, at most the cap.
    fit_source, fit_target : ndarray, shape ``(K, n)``
        Least-squares SH fits of the shell's samples on each protocol.
    eval_target : ndarray, shape ``(n_target, K)``
        SH basis at the target directions.
    """

    bval: float
    source: np.ndarray
    target: np.ndarray
    lmax: int
    fit_source: np.ndarray
    fit_target: np.ndarray
    eval_target: np.ndarray

    @property
    def degrees(self) -> np.ndarray:
        """Degree l of each SH coefficient, ``(K,)``."""
        return degrees(self.lmax)


def match_shells(
    source_bvals: np.ndarray,
    source_bvecs: np.ndarray,
    target_bvals: np.ndarray,
    target_bvecs: np.ndarray,
    lmax_cap: int = LMAX_CAP,
) -> list[ShellPair]:
    """Pair every diffusion-weighted shell of the source protocol with the target shell of the same b-value.

    Parameters
    ----------
    source_bvals, target_bvals : ndarray, shape ``(N,)``
        Nominal b-values, s/mm²; shells match within ``SHELL_TOL``.
    source_bvecs, target_bvecs : ndarray, shape ``(N, 3)``
        Unit b-vectors, voxel-axis frame.
    lmax_cap : int
        Highest SH degree.

    Returns
    -------
    list of ShellPair
        In ascending b-value; target shells the source lacks are left out.

    Raises
    ------
    ValueError
        If a source shell has no target shell within ``SHELL_TOL`` (the target protocol does not know it).
    """
    source, target = find_shells(source_bvals), find_shells(target_bvals)
    pairs = []
    for s, bval in enumerate(source.bvals):
        distance = np.abs(target.bvals - bval)
        if distance.min() > SHELL_TOL:
            known = ", ".join(f"{b:.0f}" for b in target.bvals)
            raise ValueError(f"shell b={bval:.0f} s/mm² is not in the reference protocol (shells {known} s/mm²)")
        t = int(distance.argmin())
        members_s, members_t = np.flatnonzero(source.index == s), np.flatnonzero(target.index == t)
        lmax = min(max_sh_order(members_s.size, lmax_cap), max_sh_order(members_t.size, lmax_cap))
        pairs.append(
            ShellPair(
                bval=float(target.bvals[t]),
                source=members_s,
                target=members_t,
                lmax=lmax,
                fit_source=sh_fit_matrix(source_bvecs[members_s], lmax, SH_BASIS),
                fit_target=sh_fit_matrix(target_bvecs[members_t], lmax, SH_BASIS),
                eval_target=sh_matrix(target_bvecs[members_t], lmax, SH_BASIS),
            )
        )
    return pairs


def rish_features(coeffs: np.ndarray, lmax: int) -> np.ndarray:
    """Rotation-invariant SH features: the energy of each even degree, ``(..., lmax // 2 + 1)``.

    ``RISH_l = Σ_{m=-l..l} c_lm²`` for ``c`` of shape ``(..., K)`` with ``K = (lmax+1)(lmax+2)/2``.

    Raises
    ------
    ValueError
        If the last axis of ``coeffs`` is not K.

    References
    ----------
    Mirzaalian et al., NeuroImage 135, 2016, eq. 3; Cetin Karayumak et al., NeuroImage 184, 2019, §2.2.
    """
    l_values = degrees(lmax)
    if coeffs.shape[-1] != l_values.size:
        raise ValueError(f"expected {l_values.size} SH coefficients for lmax={lmax}, got {coeffs.shape[-1]}")
    out = np.zeros(coeffs.shape[:-1] + (lmax // 2 + 1,))
    for j in range(lmax // 2 + 1):
        out[..., j] = (coeffs[..., l_values == 2 * j] ** 2).sum(-1)
    return out
