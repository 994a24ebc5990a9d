"""Brain mask from the diffusion-weighted volumes (dipy ``median_otsu``)."""

from __future__ import annotations

import numpy as np
from dipy.core.gradients import GradientTable
from dipy.segment.mask import median_otsu

MEDIAN_RADIUS = 2  # voxels; gives 303 voxels on dipy's small_64D (tests/dmri/test_mask.py), dipy's default is 4
NUMPASS = 1  # median filter passes; dipy's default is 4

__all__ = ["MEDIAN_RADIUS", "NUMPASS", "check_mask", "compute_mask"]


def check_mask(mask: np.ndarray | None, spatial_shape: tuple[int, ...], of: str = "dwi") -> np.ndarray:
    """Return ``mask`` as a boolean ``(X, Y, Z)`` array (all True when ``None``).

    Raises
    ------
    TypeError
        If ``mask`` is neither a NumPy array nor None.
    ValueError
        If its shape is not ``spatial_shape`` (the shape of ``of``, named in the message).
    """
    if mask is None:
        return np.ones(spatial_shape, dtype=bool)
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be a numpy.ndarray or None, got {type(mask).__name__}")
    if mask.shape != spatial_shape:
        raise ValueError(f"mask must have the spatial shape {spatial_shape} of {of}, got {mask.shape}")
    return mask != 0


def compute_mask(
    dwi: np.ndarray,
    gtab: GradientTable,
    valid: np.ndarray | None = None,
    *,
    median_radius: int = MEDIAN_RADIUS,
    numpass: int = NUMPASS,
) -> np.ndarray:
    """Brain mask by median filtering and Otsu thresholding of the mean DW volume.

    Parameters
    ----------
    dwi : ndarray, shape ``(X, Y, Z, N)``
        Signal, scanner units.
    gtab : GradientTable
        Acquisition of ``dwi``; its diffusion-weighted volumes (``~gtab.b0s_mask``) are used.
    valid : ndarray, shape ``(X, Y, Z)`` bool, optional
        Voxels that may enter the mask (e.g. :attr:`equidmri.dmri.io.DWIData.valid`).
    median_radius : int
        Radius of the median filter, voxels (>= 1).
    numpass : int
        Number of median filter passes (>= 1).

    Returns
    -------
    ndarray, shape ``(X, Y, Z)`` bool

    Raises
    ------
    ValueError
        If ``dwi`` is not 4D, its volume count differs from ``gtab``'s, ``valid`` has the wrong
        shape, or ``median_radius`` / ``numpass`` is below 1.

    References
    ----------
    Garyfallidis et al., Front. Neuroinform. 2014 (dipy); Otsu, IEEE Trans. SMC 1979.
    """
    dwi = np.asarray(dwi)
    if dwi.ndim != 4:
        raise ValueError(f"dwi must have shape (X, Y, Z, N), got {dwi.shape}")
    if dwi.shape[3] != gtab.bvals.shape[0]:
        raise ValueError(f"dwi has {dwi.shape[3]} volumes but the gradient table has {gtab.bvals.shape[0]}")
    if median_radius < 1 or numpass < 1:
        raise ValueError(f"median_radius and numpass must be >= 1, got {median_radius} and {numpass}")
    if valid is not None and np.shape(valid) != dwi.shape[:3]:
        raise ValueError(f"valid must have shape {dwi.shape[:3]}, got {np.shape(valid)}")
    _, mask = median_otsu(
        dwi,
        vol_idx=np.flatnonzero(~gtab.b0s_mask),
        median_radius=median_radius,
        numpass=numpass,
    )
    mask = np.asarray(mask, dtype=bool)
    if valid is not None:
        mask &= np.asarray(valid, dtype=bool)
    return mask
