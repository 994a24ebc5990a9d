"""dipy's deconvolution methods behind the registry: CSD, MSMT-CSD and RUMBA-SD (+TV).

Each is a thin adapter: it calls dipy (through :mod:`equidmri.dmri.baselines` for CSD and MSMT-CSD) and
returns an :class:`~equidmri.recon.model.FODFFit` in equidmri's conventions (``descoteaux07``,
``legacy=False``, voxel-axis frame, zeros outside the mask).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from dipy.core.gradients import GradientTable
from dipy.data import get_sphere
from dipy.reconst.rumba import RumbaSDModel

from equidmri.dmri.baselines import fit_csd, fit_msmt_csd
from equidmri.dmri.response import TissueResponses
from equidmri.methods.base import IterativeMethod, wm_fit
from equidmri.recon.model import FODFFit
from equidmri.sphere.sh import sh_fit_matrix

RUMBA_SPHERE = "repulsion724"  # dipy RUMBA's default sphere
RUMBA_SH_LMAX = 12  # SH degree fitted to RUMBA's fODF on the sphere (the output degree of the method)
RUMBA_ITERATIONS = 600  # dipy RumbaSDModel's default n_iter

__all__ = ["CSDMethod", "MSMTCSDMethod", "RumbaMethod"]


class CSDMethod(IterativeMethod):
    """Single-shell constrained spherical deconvolution (dipy) with the WM response of the lowest shell.

    References
    ----------
    Tournier, Calamante & Connelly, NeuroImage 35(4), 2007.
    """

    def fit_sh(self, dwi: np.ndarray, mask: np.ndarray, responses: TissueResponses) -> FODFFit:
        """See :meth:`IterativeMethod.fit`."""
        fodf_sh = fit_csd(dwi, self.gtab, responses.dipy_wm_response(), mask, lmax=self.lmax)
        return wm_fit(fodf_sh, mask, self.lmax)


class MSMTCSDMethod(IterativeMethod):
    """Multi-shell multi-tissue CSD (dipy, WM + GM + CSF; needs every shell and cvxpy).

    References
    ----------
    Jeurissen et al., NeuroImage 103, 2014.
    """

    def fit_sh(self, dwi: np.ndarray, mask: np.ndarray, responses: TissueResponses) -> FODFFit:
        """See :meth:`IterativeMethod.fit`; ``fractions`` holds the WM fODF integral only."""
        return wm_fit(fit_msmt_csd(dwi, self.gtab, responses, mask, lmax=self.lmax), mask, self.lmax)


@lru_cache(maxsize=2)
def _rumba_to_sh() -> tuple[Any, np.ndarray]:
    sphere = get_sphere(name=RUMBA_SPHERE)
    return sphere, sh_fit_matrix(sphere.vertices, RUMBA_SH_LMAX, "descoteaux07")


class RumbaMethod(IterativeMethod):
    """RUMBA-SD (dipy, global fit; ``use_tv`` for RUMBA-SD+TV) with the WM response of the lowest shell.

    Its fODF on dipy's ``repulsion724`` sphere is fitted with SH of degree :data:`RUMBA_SH_LMAX`.

    Parameters
    ----------
    gtab, responses
        As :class:`IterativeMethod`.
    use_tv : bool
        Total-variation regularisation across voxels (RUMBA-SD+TV).
    n_iter : int
        Richardson–Lucy iterations.

    References
    ----------
    Canales-Rodríguez et al., PLoS ONE 10(10), 2015 (RUMBA-SD).
    """

    def __init__(
        self,
        gtab: GradientTable,
        responses: TissueResponses | None = None,
        *,
        use_tv: bool = False,
        n_iter: int = RUMBA_ITERATIONS,
    ) -> None:
        super().__init__(gtab, responses, lmax=RUMBA_SH_LMAX)
        self.use_tv, self.n_iter = use_tv, n_iter

    def fit_sh(self, dwi: np.ndarray, mask: np.ndarray, responses: TissueResponses) -> FODFFit:
        """See :meth:`IterativeMethod.fit`."""
        sphere, to_sh = _rumba_to_sh()
        model = RumbaSDModel(
            self.gtab,
            wm_response=responses.evals[0, 0],
            n_iter=self.n_iter,
            voxelwise=False,
            use_tv=self.use_tv,
            sphere=sphere,
        )
        fodf = model.fit(dwi, mask=mask).odf(sphere=sphere)
        return wm_fit(np.where(mask[..., None], fodf @ to_sh.T, 0.0), mask, self.lmax)
