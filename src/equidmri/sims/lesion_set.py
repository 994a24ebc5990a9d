"""Synthetic lesion sets: train / val / test volumes and a rotated (tilted-head) test set, in memory or on disk.

Splits differ in seed, hence in geometry (phantom bundles, lesion count, size, shape, contrast) and noise; the
SNRs cycle over the given list. ``test_rotated`` holds the ``test`` subjects (same seeds, same lesions) tilted by
a random 90° grid rotation each (:mod:`equidmri.sims.lesions`). On disk (:func:`write_lesion_set`) each split is
a cohort list ``<split>.tsv`` (:func:`equidmri.data.read_cohort`) over ``<split>/<subject>/`` folders holding
``dwi.nii.gz``, ``bvals``, ``bvecs`` (FSL), ``mask.nii.gz`` and ``labels.nii.gz``, plus ``lesion_set.json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from equidmri.data import LESION_LABELS, LESION_SPLITS
from equidmri.sims.lesions import (
    BACKGROUNDS,
    LesionVolume,
    lesion_protocol,
    phantom_lesion_volume,
    real_lesion_volume,
    tilt_rotation,
)

SPLITS = LESION_SPLITS
SPLIT_SEED_OFFSET = {"train": 0, "val": 1000, "test": 2000}  # added to --seed: the splits never share a seed
TILT_SEED_OFFSET = 5000  # seeds the choice of each rotated test subject's tilt
DEFAULT_SNRS = (15.0, 30.0)
IDENTITY_AFFINE = np.diag([-1.0, 1.0, 1.0, 1.0])  # 1 mm voxels, det < 0: FSL b-vectors equal the voxel-frame ones
SET_FILE = "lesion_set.json"

__all__ = ["SPLITS", "load_lesion_split", "make_lesion_splits", "write_lesion_set"]


def make_lesion_splits(
    background: str = "phantom",
    counts: tuple[int, int, int] = (8, 2, 4),
    *,
    size: int = 10,
    snrs: tuple[float, ...] = DEFAULT_SNRS,
    seed: int = 0,
) -> dict[str, list[LesionVolume]]:
    """Volumes of every split of :data:`SPLITS` (``test_rotated``: the test subjects tilted).

    Parameters
    ----------
    background : str
        ``"phantom"`` or a real volume of dipy (:data:`equidmri.sims.lesions.BACKGROUNDS`).
    counts : (int, int, int)
        Volumes in train, val and test (>= 1 each).
    size : int
        Phantom edge, voxels (ignored for real backgrounds: their longest edge).
    snrs : tuple of float
        Cycled over the volumes of each split.
    seed : int

    Raises
    ------
    ValueError
        If ``background`` is unknown, a count is below 1 or an SNR is not positive.
    """
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    if len(counts) != 3 or min(counts) < 1:
        raise ValueError(f"counts must be three numbers >= 1 (train, val, test), got {counts}")
    if not snrs or min(snrs) <= 0:
        raise ValueError(f"SNRs must be positive, got {snrs}")
    make = _maker(background, size)
    splits: dict[str, list[LesionVolume]] = {}
    for split, count in zip(SPLITS[:3], counts):
        seeds = [seed + SPLIT_SEED_OFFSET[split] + i for i in range(count)]
        splits[split] = [make(s, snrs[i % len(snrs)], None) for i, s in enumerate(seeds)]
    tilts = np.random.default_rng(seed + TILT_SEED_OFFSET)
    splits["test_rotated"] = [
        make(v.description["seed"], v.description["snr"], tilt_rotation(tilts)) for v in splits["test"]
    ]
    return splits


def _maker(background: str, size: int):  # noqa: ANN202 - a closure over the background's fixed data
    if background == "phantom":
        protocol = lesion_protocol()
        return lambda s, snr, tilt: phantom_lesion_volume(size, protocol, s, snr, tilt)
    from equidmri.data import load_real_volume
    from equidmri.dmri.mask import compute_mask

    data = load_real_volume(background)
    mask = compute_mask(data.dwi, data.gtab(), data.valid)
    return lambda s, snr, tilt: real_lesion_volume(background, data.dwi, data.bvals, data.bvecs, mask, s, snr, tilt)


def write_lesion_set(out: str | os.PathLike, splits: dict[str, list[LesionVolume]], *, force: bool = False) -> Path:
    """Write ``splits`` (:func:`make_lesion_splits`) under ``out`` (module docstring); returns ``out``.

    Raises
    ------
    FileExistsError
        If ``out`` is a non-empty folder and not ``force`` (:func:`equidmri.dmri.io.prepare_out_dir`).
    """
    from equidmri.dmri.io import prepare_out_dir, save_fsl_gradients, save_json, save_nifti, save_text

    out = prepare_out_dir(out, force)
    record: dict[str, Any] = {"synthetic": True, "splits": {}}
    for split, volumes in splits.items():
        rows = ["subject\tdwi\tbvals\tbvecs\tmask"]
        for i, volume in enumerate(volumes):
            name = f"{split}-{i:03d}"
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            save_nifti(folder / "dwi.nii.gz", volume.dwi, IDENTITY_AFFINE, force=force)
            save_fsl_gradients(
                folder / "bvals", folder / "bvecs", volume.bvals, volume.bvecs, IDENTITY_AFFINE, force=force
            )
            save_nifti(folder / "mask.nii.gz", volume.mask, IDENTITY_AFFINE, force=force)
            save_nifti(folder / LESION_LABELS, volume.labels, IDENTITY_AFFINE, force=force)
            rows.append(
                "\t".join([name, *(f"{split}/{name}/{f}" for f in ("dwi.nii.gz", "bvals", "bvecs", "mask.nii.gz"))])
            )
        save_text(out / f"{split}.tsv", "\n".join(rows) + "\n", force=force)
        record["splits"][split] = [v.description for v in volumes]
    save_json(out / SET_FILE, record, force=force)
    return out


def load_lesion_split(set_dir: str | os.PathLike, split: str) -> list[LesionVolume]:
    """The volumes of one split of a lesion set on disk (:func:`equidmri.data.lesion_set_split`), loaded.

    A subject without a mask gets :func:`equidmri.dmri.mask.compute_mask`'s.

    Raises
    ------
    ValueError, FileNotFoundError
        From :func:`equidmri.data.lesion_set_split` and :func:`equidmri.dmri.io.load_dwi`; if a label map's shape
        differs from its DWI's.
    """
    from equidmri.data import lesion_set_split
    from equidmri.dmri.io import load_nifti_volume
    from equidmri.dmri.mask import compute_mask

    volumes = []
    for subject, labels_path in lesion_set_split(set_dir, split):
        data = subject.load()
        labels = load_nifti_volume(labels_path, "label map")[0] > 0
        if labels.shape != data.dwi.shape[:3]:
            raise ValueError(f"{labels_path} has shape {labels.shape}, its DWI {data.dwi.shape[:3]}")
        mask = data.mask if data.mask is not None else compute_mask(data.dwi, data.gtab(), data.valid)
        description = {"subject": subject.subject, "split": split}
        volumes.append(LesionVolume(data.dwi, data.bvals, data.bvecs, mask, labels & mask, description))
    return volumes
