"""Tiny DWI volumes written to disk, and an in-process ``equidmri``, for the command-line tests."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from dipy.core.gradients import gradient_table
from dipy.core.sphere import HemiSphere, disperse_charges
from dipy.data import get_fnames
from dipy.sims.voxel import multi_tensor

SHAPE = (6, 6, 4)  # voxels
N_DIRECTIONS = 30
BVALUE = 1000.0  # s/mm²
S0 = 100.0  # scanner units
EVALS = (1.7e-3, 0.3e-3, 0.3e-3)  # mm²/s, FA 0.7990
AFFINE = np.array([[2.0, 0, 0, -6], [0, 2.0, 0, -6], [0, 0, 2.5, -5], [0, 0, 0, 1]])  # mm, det > 0
CROP = (slice(None), slice(None), slice(3, 7))  # z slices of dipy's small_64D kept for the real-data path
TINY_NET = [
    "--train-from-scratch",
    "--epochs",
    "2",
    "--widths",
    "4",
    "4",
    "4",
    "4",
    "--patch-size",
    "6",
    "--threads",
    "1",
    "-q",
]


@dataclass
class Inputs:
    """Paths of a DWI series on disk."""

    dwi: Path
    bvals: Path
    bvecs: Path
    mask: Path | None = None

    def args(self) -> list[str]:
        """Input options of a subcommand (``--mask`` only when there is one)."""
        out = ["--dwi", str(self.dwi), "--bvals", str(self.bvals), "--bvecs", str(self.bvecs)]
        return out + (["--mask", str(self.mask)] if self.mask is not None else [])


def directions(n: int) -> np.ndarray:
    """``(n, 3)`` unit vectors spread over the hemisphere by electrostatic repulsion (seeded)."""
    rng = np.random.default_rng(0)
    hemisphere = HemiSphere(theta=np.arccos(rng.random(n)), phi=2 * np.pi * rng.random(n))
    return disperse_charges(hemisphere, 200)[0].vertices


def write_series(
    folder: Path,
    dwi: np.ndarray,
    bvals: np.ndarray,
    fsl_bvecs: np.ndarray,
    affine: np.ndarray,
    mask: np.ndarray | None = None,
) -> Inputs:
    """Write a DWI NIfTI, FSL bvals/bvecs (3 rows) and an optional mask into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    inputs = Inputs(folder / "dwi.nii.gz", folder / "bvals", folder / "bvecs")
    nib.save(nib.Nifti1Image(dwi.astype(np.float32), affine), inputs.dwi)
    np.savetxt(inputs.bvals, bvals[None], fmt="%.6f")
    np.savetxt(inputs.bvecs, fsl_bvecs.T, fmt="%.8f")
    if mask is not None:
        inputs.mask = folder / "mask.nii.gz"
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), inputs.mask)
    return inputs


def synthetic_series(folder: Path, bvalue: float = BVALUE) -> Inputs:
    """Noiseless single fibres along x and 90° x-y crossings in a checkerboard, one b=0 + 30 directions."""
    bvecs = np.vstack([np.zeros(3), directions(N_DIRECTIONS)])
    bvals = np.r_[0.0, np.full(N_DIRECTIONS, bvalue)]
    gtab = gradient_table(bvals, bvecs=bvecs)
    evals = np.array([EVALS, EVALS])
    dwi = np.empty(SHAPE + (bvals.size,))
    for index in np.ndindex(SHAPE):
        angles = [(90, 0), (90, 90)] if sum(index) % 2 else [(90, 0), (90, 0)]
        dwi[index], _ = multi_tensor(gtab, evals, S0=S0, angles=angles, fractions=[50, 50], snr=None)
    fsl_bvecs = bvecs * np.array([-1.0, 1.0, 1.0])  # FSL negates x for a det > 0 affine
    return write_series(folder, dwi, bvals, fsl_bvecs, AFFINE, np.ones(SHAPE, dtype=bool))


def small_64d_crop_series(folder: Path) -> Inputs:
    """The ``CROP`` of dipy's small_64D (oblique det < 0 affine, no mask), affine shifted to the crop."""
    dwi_path, bvals_path, bvecs_path = get_fnames(name="small_64D")
    image = nib.load(dwi_path)
    affine = image.affine.copy()
    affine[:, 3] = image.affine @ np.array([*(s.start or 0 for s in CROP), 1.0])
    bvecs = np.loadtxt(bvecs_path)
    return write_series(
        folder,
        np.asarray(image.dataobj)[CROP],
        np.loadtxt(bvals_path),
        bvecs.T if bvecs.shape[0] == 3 else bvecs,
        affine,
    )


def run_main(argv: list[str]) -> int:
    """``equidmri`` in-process, returning its exit code.

    ``main`` sets torch's thread count and the package's log level; both are restored afterwards so
    that the other tests run as they would alone.
    """
    from equidmri.cli.main import main  # imported late so that collection stays cheap

    threads, level = torch.get_num_threads(), logging.getLogger("equidmri").level
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)
        logging.getLogger("equidmri").setLevel(level)
