"""A tiny cohort on disk for ``train --cohort`` and ``predict --cohort``: phantoms with their own directions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cli_inputs import AFFINE, EVALS, Inputs, directions, write_series
from dipy.core.gradients import gradient_table
from dipy.sims.voxel import multi_tensor
from scipy.spatial.transform import Rotation

COHORT_SHAPE = (5, 5, 4)  # voxels
COHORT_DIRECTIONS = (30, 33, 36)  # gradient directions of each subject, b = BVALUE
COHORT_S0 = (100.0, 120.0, 90.0)  # scanner units: each subject its own WM b=0 response
BVALUE = 1000.0  # s/mm²


def phantom_series(folder: Path, n_directions: int, s0: float, seed: int, bvalue: float = BVALUE) -> Inputs:
    """Noiseless single fibres along x and 90° x-y crossings in a checkerboard, one b=0 + ``n_directions``
    directions turned by a seeded rotation (each subject its own scheme), all-ones mask."""
    turned = Rotation.random(random_state=seed).apply(directions(n_directions))
    bvecs = np.vstack([np.zeros(3), turned * np.sign(turned[:, 2:3] + 1e-12)])
    bvals = np.r_[0.0, np.full(n_directions, bvalue)]
    gtab = gradient_table(bvals, bvecs=bvecs)
    evals = np.array([EVALS, EVALS])
    dwi = np.empty(COHORT_SHAPE + (bvals.size,))
    for index in np.ndindex(COHORT_SHAPE):
        angles = [(90, 0), (90, 90)] if sum(index) % 2 else [(90, 0), (90, 0)]
        dwi[index], _ = multi_tensor(gtab, evals, S0=s0, angles=angles, fractions=[50, 50], snr=None)
    fsl_bvecs = bvecs * np.array([-1.0, 1.0, 1.0])  # FSL negates x for a det > 0 affine
    return write_series(folder, dwi, bvals, fsl_bvecs, AFFINE, np.ones(COHORT_SHAPE, dtype=bool))


def write_cohort(folder: Path, n_subjects: int = 2, bvalues: tuple[float, ...] | None = None) -> Path:
    """``folder/cohort.tsv`` listing ``n_subjects`` phantoms in ``folder/sub-XX/`` with relative paths (the
    subject column left empty: names come from the folders); ``bvalues`` gives each subject's shell."""
    bvalues = bvalues or (BVALUE,) * n_subjects
    lines = ["subject\tdwi\tbvals\tbvecs\tmask"]
    for number in range(n_subjects):
        name = f"sub-{number + 1:02d}"
        inputs = phantom_series(
            folder / name, COHORT_DIRECTIONS[number], COHORT_S0[number], seed=number, bvalue=bvalues[number]
        )
        paths = [p.relative_to(folder) for p in (inputs.dwi, inputs.bvals, inputs.bvecs, inputs.mask)]
        lines.append("\t".join(["", *map(str, paths)]))
    listing = folder / "cohort.tsv"
    listing.write_text("\n".join(lines) + "\n")
    return listing
