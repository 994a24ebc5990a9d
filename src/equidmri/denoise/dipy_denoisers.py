"""dipy's established denoisers behind one call each, for comparison with the learned ones.

Both work on whole volumes (they use neighbouring voxels or the other volumes), unlike the voxel-wise networks.
"""

from __future__ import annotations

import numpy as np
from dipy.denoise.localpca import mppca
from dipy.denoise.patch2self import patch2self

MPPCA_PATCH_RADIUS = 2  # voxels: 5³ patches (dipy's default)
PATCH2SELF_MODEL = "ols"  # dipy's default regressor

__all__ = ["DIPY_DENOISERS", "denoise_mppca", "denoise_patch2self"]


def denoise_mppca(dwi: np.ndarray, bvals: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """MP-PCA (Veraart et al., NeuroImage 142, 2016; dipy ``localpca.mppca``) of ``dwi`` ``(X, Y, Z, N)``, float64."""
    return np.asarray(mppca(np.asarray(dwi, dtype=np.float64), mask=mask, patch_radius=MPPCA_PATCH_RADIUS))


def denoise_patch2self(dwi: np.ndarray, bvals: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Patch2Self (Fadnavis et al., NeurIPS 2020; dipy ``patch2self``, OLS, b=0 volumes denoised too) of ``dwi``
    ``(X, Y, Z, N)``, float64; ``mask`` is not used (Patch2Self regresses over the whole volume)."""
    out = patch2self(
        np.asarray(dwi, dtype=np.float64), np.asarray(bvals), model=PATCH2SELF_MODEL, b0_denoising=True,
        shift_intensity=True, clip_negative_vals=False, verbose=False,
    )  # fmt: skip
    return np.asarray(out, dtype=np.float64)


DIPY_DENOISERS = {"MP-PCA": denoise_mppca, "Patch2Self": denoise_patch2self}
