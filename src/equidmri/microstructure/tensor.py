"""The diffusion tensor and its signals: forward model, dipy fit, ADC profile on the HEALPix hemisphere.

Diffusion tensors ``D`` have shape ``(..., 3, 3)`` in mm²/s, in the voxel-axis frame of the b-vectors.
The single-tensor model is ``S(g) = S0 exp(-b gᵀ D g)`` (Basser, Mattiello & LeBihan, Biophys. J. 66,
1994, eq. 1); the apparent diffusion coefficient along ``g`` is ``ADC(g) = gᵀ D g``.
"""

from __future__ import annotations

import numpy as np
from dipy.core.gradients import GradientTable, gradient_table
from dipy.reconst.dti import TensorModel, fractional_anisotropy

from equidmri.dmri.gradients import B0_THRESHOLD
from equidmri.microstructure.config import B_VALUE
from equidmri.sphere.hemisphere import hemisphere_centres

FIT_METHOD = "OLS"  # dipy TensorModel; with one b=0 and 6 directions the fit is exactly determined
ADC_SCALE = 1e3  # mm²/s -> µm²/ms: network inputs of order 1 (1e-3 mm²/s = 1 µm²/ms)


def design_matrix(bvecs: np.ndarray) -> np.ndarray:
    """Rows ``[x², y², z², 2xy, 2xz, 2yz]`` of unit vectors ``(N, 3)``.

    ``ADC = rows @ [Dxx, Dyy, Dzz, Dxy, Dxz, Dyz]``.
    """
    x, y, z = np.asarray(bvecs, dtype=np.float64).T
    return np.stack([x * x, y * y, z * z, 2 * x * y, 2 * x * z, 2 * y * z], axis=1)


def adc(tensors: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """``ADC(g) = gᵀ D g``: tensors ``(..., 3, 3)`` mm²/s, directions ``(V, 3)`` -> ``(..., V)`` mm²/s."""
    return np.einsum("vi,...ij,vj->...v", directions, tensors, directions)


def adc_profile(tensors: np.ndarray, nside: int) -> np.ndarray:
    """ADC sampled on the HEALPix hemisphere V+ (NESTED, ``hemisphere_centres``), in µm²/ms.

    Parameters
    ----------
    tensors : ndarray, shape ``(..., 3, 3)``
        Diffusion tensors, mm²/s.
    nside : int
        HEALPix resolution (V+ = 6 nside²); the ADC is antipodally symmetric, so V+ determines it.

    Returns
    -------
    ndarray, shape ``(..., V+)`` float32
        ``ADC_SCALE · gᵀ D g`` at each V+ centre g (Goodwin-Allcock et al., CDMRI 2022, §2.2).
    """
    return (ADC_SCALE * adc(tensors, hemisphere_centres(nside))).astype(np.float32)


def scheme_gtab(bvecs: np.ndarray, bval: float = B_VALUE) -> GradientTable:
    """dipy table of one b=0 volume followed by the directions ``(N, 3)`` at ``bval`` s/mm²."""
    bvecs = np.asarray(bvecs, dtype=np.float64)
    bvals = np.concatenate([[0.0], np.full(len(bvecs), bval)])
    return gradient_table(bvals, bvecs=np.vstack([np.zeros(3), bvecs]), b0_threshold=B0_THRESHOLD)


def tensor_signals(tensors: np.ndarray, gtab: GradientTable, s0: float = 1.0) -> np.ndarray:
    """Noise-free single-tensor signals ``S0 exp(-b gᵀ D g)``, shape ``(..., N)`` for ``gtab``'s N volumes."""
    return s0 * np.exp(-gtab.bvals * adc(tensors, gtab.bvecs))


def fit_tensors(signals: np.ndarray, gtab: GradientTable) -> np.ndarray:
    """Diffusion tensors fitted with dipy (``TensorModel``, ordinary least squares on the log signal).

    Parameters
    ----------
    signals : ndarray, shape ``(..., N)``
        Signals of the N volumes of ``gtab`` (at least one b=0 and 6 directions).
    gtab : GradientTable

    Returns
    -------
    ndarray, shape ``(..., 3, 3)`` float64
        Quadratic forms, mm²/s (dipy clips eigenvalues at its ``min_diffusivity``).

    References
    ----------
    Basser, Mattiello & LeBihan, J. Magn. Reson. B 103, 1994 (log-linear fit); exactly determined for
    one b=0 volume and 6 directions (7 equations, 7 unknowns).
    """
    return TensorModel(gtab, fit_method=FIT_METHOD).fit(signals).quadratic_form


def tensor_fa(tensors: np.ndarray) -> np.ndarray:
    """Fractional anisotropy of tensors ``(..., 3, 3)``, shape ``(...)``, dimensionless (dipy)."""
    return fractional_anisotropy(np.linalg.eigvalsh(tensors))
