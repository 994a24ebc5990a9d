"""MRtrix3's ``csd`` and ``msmt_csd`` behind the registry (when its commands are on ``PATH``).

The volume is written to a temporary folder with an identity affine, so that MRtrix3's scanner frame is the
voxel-axis frame, and its gradients as an MRtrix3 table (``-grad``: x y z b per volume). MRtrix3 estimates its
own responses (``dwi2response tournier`` on the lowest shell for ``csd``, ``dhollander`` for ``msmt_csd``), so
the ``responses`` argument is accepted for a common signature and not used. Its ``tournier07`` WM fODF is
converted to ``descoteaux07``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from dipy.core.gradients import GradientTable

from equidmri.dmri.gradients import find_shells
from equidmri.dmri.io import load_nifti_volume, save_nifti, save_text
from equidmri.dmri.mask import check_mask
from equidmri.dmri.response import TISSUES, TissueResponses
from equidmri.methods.base import wm_fit
from equidmri.methods.registry import REQUIRED_COMMAND
from equidmri.recon.model import FODFFit
from equidmri.sphere.sh import lmax_from_n_coeffs, sh_rotation_matrix

ALGORITHMS = ("csd", "msmt_csd")
DEFAULT_THREADS = 2  # -nthreads of every MRtrix3 command

__all__ = ["MRtrixMethod", "mrtrix_available"]


def mrtrix_available() -> bool:
    """True when MRtrix3's ``dwi2fod`` is on ``PATH``."""
    return shutil.which(REQUIRED_COMMAND) is not None


def _call(command: list[str]) -> None:
    """Run an MRtrix3 command; raise ``RuntimeError`` with its last error line if it fails."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise RuntimeError(f"{command[0]} {command[1]}: {lines[-1] if lines else f'exit {done.returncode}'}")


class MRtrixMethod:
    """MRtrix3 ``dwi2response`` + ``dwi2fod`` (``algorithm`` ``"csd"`` or ``"msmt_csd"``).

    Parameters
    ----------
    gtab : GradientTable
        b-values in s/mm², b-vectors in the voxel-axis frame.
    responses : TissueResponses, optional
        Not used (MRtrix3 estimates its own).
    algorithm : str
        ``"csd"`` (single shell: the lowest) or ``"msmt_csd"`` (WM, GM, CSF; needs several shells).
    threads : int
        ``-nthreads`` of the MRtrix3 commands.

    Raises
    ------
    ValueError
        If ``algorithm`` is not one of :data:`ALGORITHMS`.

    References
    ----------
    Tournier et al., NeuroImage 202, 2019 (MRtrix3); Tournier et al., NeuroImage 35(4), 2007 (CSD);
    Jeurissen et al., NeuroImage 103, 2014 (MSMT-CSD); Dhollander et al., ISMRM 2016 (dhollander responses).
    """

    def __init__(
        self,
        gtab: GradientTable,
        responses: TissueResponses | None = None,
        *,
        algorithm: str = "csd",
        threads: int = DEFAULT_THREADS,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        self.gtab, self.responses, self.algorithm, self.threads = gtab, responses, algorithm, threads

    def fit(self, dwi: np.ndarray, mask: np.ndarray | None = None) -> FODFFit:
        """Deconvolve ``dwi`` ``(X, Y, Z, N)`` inside ``mask`` (default: every voxel) with MRtrix3.

        Raises
        ------
        RuntimeError
            If an MRtrix3 command fails (its last error line is the message).
        """
        inside = check_mask(mask, np.shape(dwi)[:3])
        with tempfile.TemporaryDirectory(prefix="equidmri-mrtrix-") as tmp:
            out = Path(tmp)
            save_nifti(out / "dwi.nii.gz", np.asarray(dwi, dtype=np.float32), np.eye(4))
            save_nifti(out / "mask.nii.gz", inside, np.eye(4))
            rows = np.column_stack([np.asarray(self.gtab.bvecs), np.asarray(self.gtab.bvals)])
            save_text(out / "grad.txt", "\n".join(" ".join(f"{v:.8g}" for v in row) for row in rows) + "\n")
            common = [
                "-grad",
                str(out / "grad.txt"),
                "-mask",
                str(out / "mask.nii.gz"),
                "-nthreads",
                str(self.threads),
                "-quiet",
                "-force",
            ]
            dwi_file = str(out / "dwi.nii.gz")
            if self.algorithm == "csd":
                shells = ["-shells", str(int(round(find_shells(self.gtab.bvals).bvals[0])))]
                _call(["dwi2response", "tournier", dwi_file, str(out / "wm.txt"), *common, *shells, "-scratch", tmp])
                _call(["dwi2fod", "csd", dwi_file, str(out / "wm.txt"), str(out / "wm.nii.gz"), *common, *shells])
            else:
                _call(
                    [
                        "dwi2response",
                        "dhollander",
                        dwi_file,
                        *(str(out / f"{t}.txt") for t in TISSUES),
                        *common,
                        "-scratch",
                        tmp,
                    ]
                )
                outputs = [str(out / f"{t}{suffix}") for t in TISSUES for suffix in (".txt", ".nii.gz")]
                _call(["dwi2fod", "msmt_csd", dwi_file, *outputs, *common])
            tournier, _ = load_nifti_volume(out / "wm.nii.gz")
        tournier = np.nan_to_num(np.asarray(tournier, dtype=np.float64))
        lmax = lmax_from_n_coeffs(tournier.shape[-1])
        fodf_sh = tournier @ sh_rotation_matrix(np.eye(3), lmax, "tournier07", "descoteaux07").T
        return wm_fit(np.where(inside[..., None], fodf_sh, 0.0), inside, lmax)
