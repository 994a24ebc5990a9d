"""Agreement between the main peaks of two peak fields (antipodal angular differences)."""

from __future__ import annotations

import logging
import warnings

import numpy as np

from equidmri.eval.protocol import CONE_DEG

logger = logging.getLogger(__name__)

MAX_AXIS_ANGLE_DEG = 90.0  # degrees; the largest antipodal angle between two axes


def _check_peak_field(name: str, peak_dirs: np.ndarray) -> None:
    if not isinstance(peak_dirs, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(peak_dirs).__name__}")
    if peak_dirs.ndim != 5 or peak_dirs.shape[-1] != 3 or peak_dirs.shape[-2] < 1:
        raise ValueError(f"{name} must have shape (X, Y, Z, P, 3) with P >= 1, got {peak_dirs.shape}")
    if not np.all(np.isfinite(peak_dirs)):
        raise ValueError(f"{name} must be finite (zeros mark missing peaks), got NaN or infinite values")


def main_peak_agreement(
    dirs_a: np.ndarray,
    dirs_b: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    cone_deg: float = CONE_DEG,
) -> dict[str, float | int]:
    """Compare the first peaks of two peak fields voxel by voxel, ignoring the sign of directions.

    The angle between axes a and b is ``arccos(|a . b| / (|a| |b|))`` in degrees, in [0, 90], so
    peaks need not be unit vectors (amplitude-scaled MRtrix-style peaks work too). Only voxels
    where both first peaks are non-zero (and inside ``mask``) are compared.

    Parameters
    ----------
    dirs_a, dirs_b : ndarray, shape ``(X, Y, Z, P, 3)`` and ``(X, Y, Z, P', 3)``
        Peak directions, largest peak first (index 0 along P), zeros where there is no peak.
        Both must be in the same frame; P and P' may differ.
    mask : ndarray, shape ``(X, Y, Z)``, optional
        Voxels to compare (non-zero = inside). Default: every voxel.
    cone_deg : float
        Half-angle of the agreement cone, degrees in [0, 90].

    Returns
    -------
    dict
        ``n_voxels`` (int): voxels compared; ``fraction_within_cone`` (float): fraction of them with
        angle <= ``cone_deg``; ``mean_angle_deg`` and ``median_angle_deg`` (float, degrees). The
        three floats are NaN (with a warning) when no voxel can be compared.

    Raises
    ------
    TypeError
        If a peak field or the mask is not a NumPy array.
    ValueError
        If a peak field is not ``(X, Y, Z, P, 3)`` and finite, the spatial shapes differ, the mask
        shape differs or ``cone_deg`` is outside [0, 90].

    References
    ----------
    Daducci et al., "Quantitative comparison of reconstruction methods for intra-voxel fiber
    recovery from diffusion MRI", IEEE TMI 33(2), 2014 (antipodal angular error). Equation number
    not checked against the paper.
    """
    _check_peak_field("dirs_a", dirs_a)
    _check_peak_field("dirs_b", dirs_b)
    if dirs_a.shape[:3] != dirs_b.shape[:3]:
        raise ValueError(f"dirs_a and dirs_b must share spatial shape, got {dirs_a.shape[:3]} and {dirs_b.shape[:3]}")
    if not 0.0 <= cone_deg <= MAX_AXIS_ANGLE_DEG:
        raise ValueError(f"cone_deg must be in [0, 90] degrees, got {cone_deg}")
    if mask is None:
        inside = np.ones(dirs_a.shape[:3], dtype=bool)
    elif not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be a numpy.ndarray or None, got {type(mask).__name__}")
    elif mask.shape != dirs_a.shape[:3]:
        raise ValueError(f"mask must have the spatial shape {dirs_a.shape[:3]} of the peak fields, got {mask.shape}")
    else:
        inside = mask != 0

    first_a = dirs_a[..., 0, :].astype(np.float64)
    first_b = dirs_b[..., 0, :].astype(np.float64)
    norm_a = np.linalg.norm(first_a, axis=-1)
    norm_b = np.linalg.norm(first_b, axis=-1)
    compared = inside & (norm_a > 0) & (norm_b > 0)
    n_voxels = int(compared.sum())
    if n_voxels == 0:
        warnings.warn("no voxel has a first peak in both fields (inside the mask); agreement is NaN", stacklevel=2)
        return {"n_voxels": 0, "fraction_within_cone": np.nan, "mean_angle_deg": np.nan, "median_angle_deg": np.nan}

    cosines = np.abs(np.sum(first_a[compared] * first_b[compared], axis=-1)) / (norm_a[compared] * norm_b[compared])
    angles = np.degrees(np.arccos(np.clip(cosines, 0.0, 1.0)))
    logger.debug("main-peak agreement over %d voxels: median %.2f deg", n_voxels, float(np.median(angles)))
    return {
        "n_voxels": n_voxels,
        "fraction_within_cone": float(np.mean(angles <= cone_deg)),
        "mean_angle_deg": float(np.mean(angles)),
        "median_angle_deg": float(np.median(angles)),
    }


def second_peak_recall(
    ref_dirs: np.ndarray,
    ref_values: np.ndarray,
    dirs: np.ndarray,
    mask: np.ndarray,
    *,
    min_ratio: float = 0.5,
    cone_deg: float = CONE_DEG,
) -> dict[str, float | int]:
    """How many of a reference's clear second peaks (crossings) another peak field finds.

    A voxel counts when it is in ``mask`` and the reference's second peak is at least ``min_ratio`` times its
    first; the crossing is found when any peak of ``dirs`` lies within ``cone_deg`` of that second peak (axes,
    sign ignored).

    Parameters
    ----------
    ref_dirs : ndarray, shape ``(X, Y, Z, P, 3)``
        Reference peak directions, largest first, zeros where there is no peak.
    ref_values : ndarray, shape ``(X, Y, Z, P)``
        Their amplitudes (fODF units).
    dirs : ndarray, shape ``(X, Y, Z, P', 3)``
        Peaks to test, same frame.
    mask : ndarray, shape ``(X, Y, Z)`` bool
    min_ratio : float
        Second-to-first amplitude ratio that makes a reference crossing clear, in (0, 1].
    cone_deg : float
        Matching cone, degrees.

    Returns
    -------
    dict
        ``n_crossings`` (int) and ``fraction_found`` (float, NaN when there is no crossing).

    Raises
    ------
    TypeError, ValueError
        As :func:`main_peak_agreement`; ``ValueError`` also if ``ref_values`` does not match ``ref_dirs``, the
        reference has fewer than two peaks, or ``min_ratio`` is outside (0, 1].

    References
    ----------
    Jeurissen et al., NeuroImage 103, 2014 (crossing-fibre recovery of MSMT-CSD against single-shell CSD).
    """
    _check_peak_field("ref_dirs", ref_dirs)
    _check_peak_field("dirs", dirs)
    if ref_values.shape != ref_dirs.shape[:4] or ref_dirs.shape[3] < 2:
        raise ValueError(
            f"ref_values must be (X, Y, Z, P >= 2) matching ref_dirs {ref_dirs.shape}, got {ref_values.shape}"
        )
    if dirs.shape[:3] != ref_dirs.shape[:3] or np.shape(mask) != ref_dirs.shape[:3]:
        raise ValueError(
            f"dirs {dirs.shape[:3]}, mask {np.shape(mask)} and ref_dirs {ref_dirs.shape[:3]} must share "
            "the spatial shape"
        )
    if not 0.0 < min_ratio <= 1.0:
        raise ValueError(f"min_ratio must be in (0, 1], got {min_ratio}")
    crossing = (
        np.asarray(mask, bool) & (ref_values[..., 1] >= min_ratio * ref_values[..., 0]) & (ref_values[..., 1] > 0)
    )
    n = int(crossing.sum())
    if n == 0:
        return {"n_crossings": 0, "fraction_found": float("nan")}
    second = ref_dirs[crossing][:, 1].astype(np.float64)
    second /= np.linalg.norm(second, axis=-1, keepdims=True)
    candidates = dirs[crossing].astype(np.float64)  # (n, P', 3)
    norms = np.linalg.norm(candidates, axis=-1)
    cosines = np.abs(np.einsum("nk,npk->np", second, candidates)) / np.where(norms > 0, norms, 1.0)
    cosines[norms == 0] = 0.0
    found = np.degrees(np.arccos(np.clip(cosines.max(axis=-1), 0.0, 1.0))) <= cone_deg
    return {"n_crossings": n, "fraction_found": float(found.mean())}
