"""How well a reconstruction keeps a voxel's diffusion signal: signal MAE, FA MAE and main-direction error.

The paper's three measures of an autoencoder trained on synthetic data and applied to real voxels (Sadegheih,
Weninger & Merhof 2023): the mean absolute error of the b0-normalised signal, the mean absolute error of the FA
of dipy's tensor fit (weighted least squares, every volume of the table) to the reconstructed vs the original
signal, and the angle between the two fits' principal eigenvectors (antipodally symmetric, degrees).
"""

from __future__ import annotations

import warnings

import numpy as np
from dipy.core.gradients import GradientTable
from dipy.reconst.dti import TensorModel

SIGNAL_FLOOR = 1e-3  # smallest b0-normalised signal passed to the log-linear tensor fit (a reconstruction may be <= 0)

__all__ = ["reconstruction_errors", "tensor_fa_and_direction", "voxel_errors"]


def tensor_fa_and_direction(signals: np.ndarray, gtab: GradientTable) -> tuple[np.ndarray, np.ndarray]:
    """FA ``(M,)`` and unit principal eigenvector ``(M, 3)`` of dipy's WLS tensor fit to signals ``(M, N)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # dipy's note on b > 1200 s/mm²
        fit = TensorModel(gtab, fit_method="WLS").fit(np.maximum(signals, SIGNAL_FLOOR))
    return np.nan_to_num(fit.fa), fit.evecs[..., :, 0]


def voxel_errors(
    reconstructed: np.ndarray,
    signals: np.ndarray,
    gtab: GradientTable,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Per-voxel errors of ``reconstructed`` against ``signals``, both ``(M, N)`` b0-normalised on ``gtab``'s volumes.

    ``reference`` is :func:`tensor_fa_and_direction` of ``signals`` when the caller has it already (several
    reconstructions of the same voxels); it is not checked against ``signals``.

    Returns
    -------
    dict of ndarray, each ``(M,)`` float64
        ``signal_ae`` (mean absolute error over the diffusion-weighted volumes, dimensionless), ``fa_ae`` (absolute
        FA difference of the two WLS tensor fits) and ``direction_error_deg`` (angle between their principal
        eigenvectors, degrees in [0, 90]).

    Raises
    ------
    ValueError
        If the shapes differ or N is not ``gtab``'s number of volumes.
    """
    reconstructed, signals = np.asarray(reconstructed, dtype=np.float64), np.asarray(signals, dtype=np.float64)
    if reconstructed.shape != signals.shape or signals.ndim != 2 or signals.shape[1] != gtab.bvals.size:
        raise ValueError(
            f"reconstructed and signals must both be (M, {gtab.bvals.size}), got {reconstructed.shape} and "
            f"{signals.shape}"
        )
    fa_rec, dir_rec = tensor_fa_and_direction(reconstructed, gtab)
    fa, direction = tensor_fa_and_direction(signals, gtab) if reference is None else reference
    cosine = np.clip(np.abs(np.einsum("mi,mi->m", dir_rec, direction)), 0.0, 1.0)
    dw = ~gtab.b0s_mask
    return {
        "signal_ae": np.abs(reconstructed[:, dw] - signals[:, dw]).mean(1),
        "fa_ae": np.abs(fa_rec - fa),
        "direction_error_deg": np.degrees(np.arccos(cosine)),
    }


def reconstruction_errors(reconstructed: np.ndarray, signals: np.ndarray, gtab: GradientTable) -> dict[str, float]:
    """Errors of ``reconstructed`` against ``signals``, both ``(M, N)`` b0-normalised on ``gtab``'s volumes: the
    means over the voxels of :func:`voxel_errors`.

    Returns
    -------
    dict
        ``signal_mae`` (diffusion-weighted volumes, dimensionless), ``fa_mae`` (dimensionless),
        ``direction_error_deg_mean`` and ``direction_error_deg_median`` (degrees, in [0, 90]).

    Raises
    ------
    ValueError
        As :func:`voxel_errors`.
    """
    errors = voxel_errors(reconstructed, signals, gtab)
    angles = errors["direction_error_deg"]
    return {
        "signal_mae": float(errors["signal_ae"].mean()),
        "fa_mae": float(errors["fa_ae"].mean()),
        "direction_error_deg_mean": float(angles.mean()),
        "direction_error_deg_median": float(np.median(angles)),
    }
