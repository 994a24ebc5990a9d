"""Read ground truth and predicted peaks from disk for the evaluation (world frame, MRtrix3 layout)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from equidmri.dmri.io import load_nifti_volume
from equidmri.dmri.peaks import find_peaks
from equidmri.eval.protocol import SH_BASES
from equidmri.sphere.sh import lmax_from_n_coeffs, sh_rotation_matrix

FOD_PEAK_THRESHOLD = 0.05  # relative; the lowest evaluation threshold, so that every threshold can be applied

__all__ = ["SH_BASES", "load_ground_truth", "load_peak_field", "peaks_from_fod"]


def load_peak_field(
    path: str | os.PathLike, values_path: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peaks ``(X, Y, Z, 3P)`` from a NIfTI: ``(peak_dirs (X,Y,Z,P,3), peak_values (X,Y,Z,P), affine)``.

    NaN (MRtrix3 ``sh2peaks``) counts as no peak. Without ``values_path`` the amplitudes are the vector
    norms (``sh2peaks`` scales directions by amplitude; unit vectors all get 1).

    Raises
    ------
    FileNotFoundError
        If a file is missing.
    ValueError
        If the image is not 4D with a multiple of 3 volumes, or the values do not have P volumes.
    """
    data, affine = load_nifti_volume(path)
    data = np.nan_to_num(np.asarray(data, dtype=np.float64))
    if data.ndim != 4 or data.shape[-1] % 3:
        raise ValueError(f"{path}: peaks must be (X, Y, Z, 3P), got shape {data.shape}")
    dirs = data.reshape(*data.shape[:3], -1, 3)
    if values_path is None:
        return dirs, np.linalg.norm(dirs, axis=-1), affine
    values = np.nan_to_num(np.asarray(load_nifti_volume(values_path)[0], dtype=np.float64))
    if values.ndim == 3:
        values = values[..., None]
    if values.shape != dirs.shape[:4]:
        raise ValueError(f"{values_path}: peak values must have shape {dirs.shape[:4]}, got {values.shape}")
    return dirs, values, affine


def load_ground_truth(gt_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(gt_dirs (X,Y,Z,P,3) world frame, evaluation mask (X,Y,Z) bool, affine)`` of a phantom volume.

    The evaluation mask holds the voxels of ``mask.nii.gz`` with at least one ground-truth fibre (the
    white-matter voxels, as DiSCo's mask).

    Raises
    ------
    FileNotFoundError
        If ``gt_peaks.nii.gz`` or ``mask.nii.gz`` is missing.
    """
    gt_dir = Path(gt_dir)
    dirs, _, affine = load_peak_field(gt_dir / "gt_peaks.nii.gz")
    mask = np.asarray(load_nifti_volume(gt_dir / "mask.nii.gz")[0]) > 0
    return dirs, mask & (np.linalg.norm(dirs, axis=-1) > 0).any(-1), affine


def peaks_from_fod(
    fodf_sh: np.ndarray, sh_basis: str, mask: np.ndarray | None = None, npeaks: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of an SH fODF image, in the image's frame: ``(peak_dirs (X,Y,Z,P,3), peak_values (X,Y,Z,P))``.

    Raises
    ------
    ValueError
        If ``sh_basis`` is not one of :data:`SH_BASES` or the SH count is invalid.
    """
    if sh_basis not in SH_BASES:
        raise ValueError(f"sh_basis must be one of {SH_BASES}, got {sh_basis!r}")
    fodf_sh = np.asarray(fodf_sh, dtype=np.float64)
    if sh_basis == "tournier07":
        convert = sh_rotation_matrix(np.eye(3), lmax_from_n_coeffs(fodf_sh.shape[-1]), "tournier07", "descoteaux07")
        fodf_sh = fodf_sh @ convert.T
    return find_peaks(np.nan_to_num(fodf_sh), mask, relative_peak_threshold=FOD_PEAK_THRESHOLD, npeaks=npeaks)
