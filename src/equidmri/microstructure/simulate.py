"""Simulated voxels for training and testing: tissue-like tensors, 6-direction signals with Rician noise.

A tensor is drawn as (tissue, FA, MD, shape, orientation): FA and MD from per-tissue uniform ranges, the
deviatoric part from FA and MD, the orientation uniform over SO(3) (``orientation="random"``) or with the
principal eigenvector on the anterior-posterior axis ``y`` and the second on superior-inferior ``z``
(``orientation="ap"``, the restricted training set of Goodwin-Allcock et al., CDMRI 2022, §2.4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from dipy.sims.voxel import add_noise
from scipy.spatial.transform import Rotation

from equidmri.microstructure.config import ORIENTATIONS, SNR
from equidmri.microstructure.tensor import tensor_fa, tensor_signals

# name: (probability, FA range, MD range in mm²/s). MD: Pierpaoli et al., Radiology 201, 1996 (WM and GM
# ~0.7-0.9e-3, CSF ~3e-3 at 37 °C); FA ranges chosen to cover every FA bin [0, 0.95].
TISSUES = {
    "wm": (0.6, (0.2, 0.95), (0.6e-3, 0.9e-3)),
    "gm": (0.3, (0.05, 0.35), (0.7e-3, 1.0e-3)),
    "csf": (0.1, (0.0, 0.15), (2.5e-3, 3.2e-3)),
}
AP_FRAME = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # columns e1 = y (AP), e2 = z (SI), e3 = x
_DEVIATORIC = np.array([[2.0, -1.0, -1.0], [0.0, 1.0, -1.0]]) / np.array([[np.sqrt(6.0)], [np.sqrt(2.0)]])


def eigenvalues_from_fa(fa: np.ndarray, md: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Eigenvalues ``(..., 3)`` mm²/s with the given FA, MD (mm²/s) and shape angle ``psi`` (rad).

    ``λ = MD + s (cos ψ · (2, -1, -1)/√6 + sin ψ · (0, 1, -1)/√2)``
    with ``s = MD · FA · sqrt(3 / (3/2 - FA²))``,
    so that FA = sqrt(3/2) |λ - MD| / |λ| (Basser & Pierpaoli, J. Magn. Reson. B 111, 1996, eq. 12);
    ψ = 0 is a prolate (cylindrical) tensor. Eigenvalues are sorted descending; they may be negative.
    """
    s = md * fa * np.sqrt(3.0 / (1.5 - fa**2))
    direction = np.cos(shape)[..., None] * _DEVIATORIC[0] + np.sin(shape)[..., None] * _DEVIATORIC[1]
    return -np.sort(-(md[..., None] + s[..., None] * direction), axis=-1)


def sample_tensors(n: int, rng: np.random.Generator, orientation: str = "random") -> np.ndarray:
    """Draw ``n`` positive-definite tissue tensors, shape ``(n, 3, 3)`` mm²/s (see the module docstring).

    Raises
    ------
    ValueError
        If ``orientation`` is not ``"random"`` or ``"ap"``.
    """
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    names = list(TISSUES)
    tissue = rng.choice(len(names), size=n, p=[TISSUES[name][0] for name in names])
    evals = np.empty((n, 3))
    todo = np.arange(n)
    while todo.size:  # redraw the shape (and FA) of tensors with a non-positive eigenvalue
        ranges = np.array([TISSUES[names[t]][1:] for t in tissue[todo]])  # (m, 2, 2)
        fa, md = rng.uniform(ranges[:, 0, 0], ranges[:, 0, 1]), rng.uniform(ranges[:, 1, 0], ranges[:, 1, 1])
        evals[todo] = eigenvalues_from_fa(fa, md, rng.uniform(0.0, np.pi / 6, size=todo.size))
        todo = todo[evals[todo, 2] <= 0.05 * md]
    frames = AP_FRAME if orientation == "ap" else Rotation.random(n, random_state=rng).as_matrix()
    return np.einsum("...ij,...j,...kj->...ik", frames, evals, frames)


def rotate_to_ap(tensors: np.ndarray) -> np.ndarray:
    """The tensors ``(..., 3, 3)`` with their eigenvectors replaced by e1 = AP (y), e2 = SI (z), e3 = x."""
    evals = np.linalg.eigvalsh(tensors)[..., ::-1]
    return np.einsum("ij,...j,kj->...ik", AP_FRAME, evals, AP_FRAME)


@dataclass(frozen=True)
class SimulatedVoxels:
    """Noisy acquisitions of known tensors.

    Attributes
    ----------
    tensors : ndarray, shape ``(M, 3, 3)``
        Ground-truth tensors, mm²/s.
    fa : ndarray, shape ``(M,)``
        Ground-truth FA, dimensionless.
    signals : ndarray, shape ``(M, N)``
        Signals of the N volumes of the gradient table (b=0 first), Rician noise, S0 = 1.
    """

    tensors: np.ndarray
    fa: np.ndarray
    signals: np.ndarray


def simulate_acquisition(
    tensors: np.ndarray, gtab, rng: np.random.Generator, snr: float | None = SNR
) -> SimulatedVoxels:
    """Signals of ``tensors`` ``(M, 3, 3)`` for ``gtab`` with Rician noise (dipy ``add_noise``, S0 = 1).

    ``snr`` is S0 over the noise standard deviation of each channel; None gives noise-free signals.
    """
    signals = add_noise(tensor_signals(tensors, gtab), snr, 1.0, noise_type="rician", rng=rng)
    return SimulatedVoxels(tensors=tensors, fa=tensor_fa(tensors), signals=signals)
