"""Brain mask from the diffusion-weighted volumes: dipy's ``median_otsu``, unless the volume has no background.

Otsu's threshold splits a histogram into two classes. On a whole-head acquisition these are the background
(air at the edges of the field of view, at the noise level) and the head. A volume cropped inside the brain
(dipy's ``small_64D``, ``small_101D`` and ``small_25``, MRtrix3's test volumes) has no background, and the
threshold then cuts through tissue: ``median_otsu`` keeps 303 of the 1000 voxels of ``small_64D`` (it drops
CSF and half of the white matter, which are dark on the mean DW volume). :func:`has_background` looks for
the background where it must be, on the faces of the field of view (the same place the NEMA/Kaufman method
measures MRI noise in the background air): the volume has one when the median b=0 signal of its border
voxels is below ``BACKGROUND_LEVEL`` of its 99th-percentile b=0 signal. Measured ratios: 0.015 on a whole-
head slab (MRtrix3 test data ``b0.nii.gz``), 0.156 / 0.372 / 0.851 on dipy's ``small_64D`` / ``small_101D`` /
``small_25``, 0.314 on MRtrix3's multi-shell crop; the level sits between them, a factor of 3 from each side.
"""

from __future__ import annotations

import logging

import numpy as np
from dipy.core.gradients import GradientTable
from dipy.segment.mask import median_otsu

logger = logging.getLogger(__name__)

MEDIAN_RADIUS = 2  # voxels; gives 303 voxels on dipy's small_64D (tests/dmri/test_mask.py), dipy's default is 4
NUMPASS = 1  # median filter passes; dipy's default is 4
BACKGROUND_LEVEL = 0.05  # border median b=0 / 99th-percentile b=0 below which the volume has background (see above)
TISSUE_PERCENTILE = 99.0  # percentile of the b=0 signal taken as the tissue level (robust to a few hot voxels)
MIN_BORDER_AXIS = 3  # voxels: an axis shorter than this has no interior, so its faces are not a border (thin slabs)

__all__ = [
    "BACKGROUND_LEVEL",
    "MEDIAN_RADIUS",
    "NUMPASS",
    "check_mask",
    "compute_mask",
    "has_background",
    "median_otsu_mask",
]


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


def border_voxels(shape: tuple[int, ...]) -> np.ndarray:
    """``(X, Y, Z)`` bool: the voxels on the two faces of every axis with at least ``MIN_BORDER_AXIS`` voxels."""
    border = np.zeros(shape, dtype=bool)
    for axis, n in enumerate(shape):
        if n >= MIN_BORDER_AXIS:
            np.moveaxis(border, axis, 0)[[0, -1]] = True
    return border


def has_background(b0: np.ndarray, valid: np.ndarray | None = None) -> bool:
    """Whether a volume shows background (air at the noise level) on the faces of its field of view.

    Parameters
    ----------
    b0 : ndarray, shape ``(X, Y, Z)``
        Mean b=0 signal, scanner units.
    valid : ndarray, shape ``(X, Y, Z)`` bool, optional
        Voxels to consider (finite on disk).

    Returns
    -------
    bool
        True when the median b=0 of the border voxels (faces of the axes of at least ``MIN_BORDER_AXIS``
        voxels) is below ``BACKGROUND_LEVEL`` times the ``TISSUE_PERCENTILE``-th percentile of the b=0; False
        when there is no such border or no positive signal.

    References
    ----------
    Kaufman et al., "Measuring signal-to-noise ratios in MR imaging", Radiology 173, 1989 (noise measured in
    the background air at the edges of the field of view); Otsu, IEEE Trans. SMC 9, 1979 (two classes).
    """
    valid = np.ones(b0.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    border = border_voxels(b0.shape) & valid
    tissue = np.percentile(b0[valid], TISSUE_PERCENTILE) if valid.any() else 0.0
    if not border.any() or tissue <= 0:
        return False
    return bool(np.median(b0[border]) < BACKGROUND_LEVEL * tissue)


def _check_inputs(
    dwi: np.ndarray, gtab: GradientTable, valid: np.ndarray | None, median_radius: int, numpass: int
) -> np.ndarray:
    dwi = np.asarray(dwi)
    if dwi.ndim != 4:
        raise ValueError(f"dwi must have shape (X, Y, Z, N), got {dwi.shape}")
    if dwi.shape[3] != gtab.bvals.shape[0]:
        raise ValueError(f"dwi has {dwi.shape[3]} volumes but the gradient table has {gtab.bvals.shape[0]}")
    if valid is not None and np.shape(valid) != dwi.shape[:3]:
        raise ValueError(f"valid must have shape {dwi.shape[:3]}, got {np.shape(valid)}")
    if median_radius < 1 or numpass < 1:
        raise ValueError(f"median_radius and numpass must be >= 1, got {median_radius} and {numpass}")
    return dwi


def compute_mask(
    dwi: np.ndarray,
    gtab: GradientTable,
    valid: np.ndarray | None = None,
    *,
    median_radius: int = MEDIAN_RADIUS,
    numpass: int = NUMPASS,
) -> np.ndarray:
    """Brain mask: :func:`median_otsu_mask` when the volume has background (:func:`has_background`), else
    every valid voxel with a positive mean b=0 signal (one info line says so).

    Parameters and errors as :func:`median_otsu_mask`.
    """
    dwi = _check_inputs(dwi, gtab, valid, median_radius, numpass)
    b0 = dwi[..., gtab.b0s_mask].mean(axis=-1) if gtab.b0s_mask.any() else dwi.mean(axis=-1)
    if has_background(b0, valid):
        return median_otsu_mask(dwi, gtab, valid, median_radius=median_radius, numpass=numpass)
    mask = b0 > 0
    if valid is not None:
        mask &= np.asarray(valid, dtype=bool)
    logger.info(
        "no background on the faces of the volume (border b=0 not below %g of its %g-th percentile): the mask "
        "keeps every finite voxel with a positive b=0 signal (%d of %d) instead of median_otsu's",
        BACKGROUND_LEVEL,
        TISSUE_PERCENTILE,
        int(mask.sum()),
        mask.size,
    )
    return mask


def median_otsu_mask(
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
    dwi = _check_inputs(dwi, gtab, valid, median_radius, numpass)
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
