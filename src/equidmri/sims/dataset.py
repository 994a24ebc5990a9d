"""A train/validation/test set of phantoms on disk, at high and low angular resolution (as DiSCo ships).

Layout of ``OUT/<volume>/`` for volume in ``train``, ``val``, ``test``:

- ``dwi.nii.gz`` + ``bvals`` + ``bvecs`` (FSL): the high angular resolution acquisition;
- ``dwi_low.nii.gz`` + ``bvals_low`` + ``bvecs_low``: its b=0 volumes and 29 random directions of the
  lowest shell (the same volumes of the same noisy series);
- ``mask.nii.gz``; ``gt_peaks.nii.gz`` ``(X, Y, Z, 3P)`` world-frame unit vectors, zeros where there is
  no fibre (the layout of equidmri's ``peaks.nii.gz``); ``gt_fractions.nii.gz`` ``(X, Y, Z, P)`` voxel
  fraction of each of those fibres; ``tissue_fractions.nii.gz`` ``(X, Y, Z, 3)`` WM, GM, CSF;
- ``phantom.json``: geometry, protocol and settings.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from equidmri.dmri.io import (
    check_outputs_free,
    load_nifti_volume,
    save_fsl_gradients,
    save_json,
    save_nifti,
    save_peaks,
)
from equidmri.sims.defaults import FILES, RESOLUTIONS, VOLUMES
from equidmri.sims.phantoms import Phantom, make_phantom
from equidmri.sims.synthesis import Protocol, low_resolution, make_protocol

VOXEL_SIZE = 1.0  # mm, isotropic

__all__ = [  # FILES, RESOLUTIONS and VOLUMES live in equidmri.sims.defaults (no numpy)
    "FILES",
    "RESOLUTIONS",
    "VOLUMES",
    "crop_phantom_set",
    "phantom_affine",
    "save_gradients",
    "series_paths",
    "write_phantom_set",
]


def phantom_affine(size: int) -> np.ndarray:
    """1 mm RAS+ affine (det > 0, so FSL b-vectors have x negated) centred on the volume."""
    affine = np.diag([VOXEL_SIZE, VOXEL_SIZE, VOXEL_SIZE, 1.0])
    affine[:3, 3] = -VOXEL_SIZE * (size - 1) / 2
    return affine


def series_paths(volume_dir: str | os.PathLike, resolution: str) -> tuple[Path, Path, Path]:
    """``(dwi, bvals, bvecs)`` paths of one resolution (``"high"`` or ``"low"``) of a volume directory.

    Raises
    ------
    ValueError
        If ``resolution`` is not one of :data:`RESOLUTIONS`.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {sorted(RESOLUTIONS)}, got {resolution!r}")
    suffix, folder = RESOLUTIONS[resolution], Path(volume_dir)
    return folder / f"dwi{suffix}.nii.gz", folder / f"bvals{suffix}", folder / f"bvecs{suffix}"


def save_gradients(folder: Path, suffix: str, protocol: Protocol, affine: np.ndarray, force: bool) -> None:
    """``folder/bvals<suffix>`` and ``folder/bvecs<suffix>`` of ``protocol`` in FSL convention for ``affine``."""
    save_fsl_gradients(
        folder / f"bvals{suffix}", folder / f"bvecs{suffix}", protocol.bvals, protocol.bvecs, affine, force=force
    )


def _write_volume(
    folder: Path, phantom: Phantom, low_index: np.ndarray, affine: np.ndarray, force: bool, extra: dict[str, Any]
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_nifti(folder / "dwi.nii.gz", phantom.dwi, affine, force=force)
    save_gradients(folder, "", phantom.protocol, affine, force)
    save_nifti(folder / "dwi_low.nii.gz", phantom.dwi[..., low_index], affine, force=force)
    save_gradients(folder, "_low", phantom.protocol.select(low_index), affine, force)
    save_nifti(folder / "mask.nii.gz", phantom.mask, affine, force=force)
    save_peaks(
        folder / "gt_peaks.nii.gz",
        folder / "gt_fractions.nii.gz",
        phantom.peak_dirs,
        phantom.peak_fractions,
        affine,
        force=force,
    )
    save_nifti(folder / "tissue_fractions.nii.gz", phantom.tissue_fractions.astype(np.float32), affine, force=force)
    save_json(folder / "phantom.json", {**phantom.description, **extra}, force=force)


def write_phantom_set(
    out: str | os.PathLike, *, seed: int = 0, size: int = 40, snr: float | None = 30.0, force: bool = False
) -> dict[str, Any]:
    """Generate and write the train, validation and test phantoms (different geometries and noise).

    The three volumes share one acquisition protocol and one low-resolution subset (drawn from
    ``seed``); each volume's geometry and noise come from its own child of ``SeedSequence(seed)``.

    Parameters
    ----------
    out : path
        Output directory; ``out/train``, ``out/val``, ``out/test`` are created.
    seed : int
    size : int
        Edge of each cubic volume, voxels of 1 mm.
    snr : float or None
        b=0 signal of pure WM over the Rician noise σ; None for noise-free volumes.
    force : bool
        Overwrite existing files.

    Returns
    -------
    dict
        ``seconds`` per volume and in total, ``n_volumes`` high/low.

    Raises
    ------
    FileExistsError
        If an output file exists and not ``force`` (checked before anything is computed).
    ValueError
        If ``size`` or ``snr`` is invalid.
    """
    out = Path(out)
    check_outputs_free([out / v / f for v in VOLUMES for f in FILES], force)
    start = time.perf_counter()
    protocol_rng, *volume_seeds = np.random.SeedSequence(seed).spawn(1 + len(VOLUMES))
    protocol_rng = np.random.default_rng(protocol_rng)
    protocol = make_protocol(protocol_rng)
    low_index = low_resolution(protocol, protocol_rng)
    affine = phantom_affine(size)
    seconds = {}
    for name, volume_seed in zip(VOLUMES, volume_seeds):
        tick = time.perf_counter()
        phantom = make_phantom(size, protocol, np.random.default_rng(volume_seed), snr=snr)
        _write_volume(
            out / name,
            phantom,
            low_index,
            affine,
            force,
            {"volume": name, "seed": seed, "shells_s_mm2": sorted(set(protocol.bvals.tolist()))},
        )
        seconds[name] = round(time.perf_counter() - tick, 3)
    seconds["total"] = round(time.perf_counter() - start, 3)
    return {"seconds": seconds, "n_volumes": {"high": int(protocol.bvals.size), "low": int(low_index.size)}}


def crop_phantom_set(src: str | os.PathLike, dst: str | os.PathLike, size: int) -> Path:
    """Copy a phantom set keeping the central ``size``³ voxels of every image (affines shifted to match).

    Raises
    ------
    FileNotFoundError
        If a file of the set is missing.
    """
    src, dst = Path(src), Path(dst)
    for volume in VOLUMES:
        (dst / volume).mkdir(parents=True, exist_ok=True)
        for name in FILES:
            if not name.endswith(".nii.gz"):
                shutil.copyfile(src / volume / name, dst / volume / name)
                continue
            data, affine = load_nifti_volume(src / volume / name)
            start = [max((n - size) // 2, 0) for n in data.shape[:3]]
            crop = tuple(slice(a, a + size) for a in start)
            shifted = affine.copy()
            shifted[:3, 3] = affine[:3, :3] @ np.asarray(start, dtype=np.float64) + affine[:3, 3]
            save_nifti(dst / volume / name, np.asarray(data)[crop], shifted, force=True)
    return dst
