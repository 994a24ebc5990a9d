"""Reference reconstructions from dipy (thin adapters): single-shell CSD, multi-shell multi-tissue CSD and DTI FA.

Outputs follow equidmri's conventions: fODF SH in ``descoteaux07`` with ``legacy=False`` (dipy's
CSD and MSMT-CSD return the legacy basis, converted here), float64, zeros outside the mask, voxel-axis frame
(dipy uses the b-vectors as given).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from dipy.core.gradients import GradientTable
from dipy.reconst.csdeconv import ConstrainedSphericalDeconvModel
from dipy.reconst.dti import TensorModel
from dipy.reconst.shm import convert_sh_from_legacy

from equidmri.dmri.gradients import SHELL_TOL
from equidmri.dmri.mask import check_mask
from equidmri.dmri.response import TISSUES, TissueResponses
from equidmri.extras import require_extra
from equidmri.sphere.sh import check_lmax

logger = logging.getLogger(__name__)

CSD_LMAX = 8  # maximal SH degree of the fODF; dipy's `sh_order_max` default and the degree of fod.nii.gz
DTI_FIT_METHOD = "WLS"  # weighted least squares; dipy's TensorModel default (Chung et al., NeuroImage 2006)
DTI_CHUNK_VOXELS = 32768  # voxels per tensor fit: dipy's float64 work arrays stay ~100 MB at 300 volumes


def _check_dwi(dwi: np.ndarray, gtab: GradientTable) -> None:
    if not isinstance(gtab, GradientTable):
        raise TypeError(f"gtab must be a dipy GradientTable, got {type(gtab).__name__}")
    if not isinstance(dwi, np.ndarray):
        raise TypeError(f"dwi must be a numpy.ndarray, got {type(dwi).__name__}")
    if dwi.ndim != 4:
        raise ValueError(f"dwi must have shape (X, Y, Z, N), got {dwi.shape}")
    if dwi.shape[-1] != len(gtab.bvals):
        raise ValueError(f"dwi must have N = {len(gtab.bvals)} volumes to match gtab, got {dwi.shape[-1]}")
    if not np.all(np.isfinite(dwi)):
        raise ValueError(f"dwi must be finite, got {int(np.sum(~np.isfinite(dwi)))} NaN or infinite values")


def _check_response(wm_response: Sequence) -> tuple[np.ndarray, float]:
    """Validate a dipy single-shell response ``(evals (3,), s0)`` and return it as float64."""
    if not isinstance(wm_response, (tuple, list)) or len(wm_response) != 2:
        raise ValueError(f"wm_response must be a pair (evals (3,), s0), got {wm_response!r}")
    evals = np.asarray(wm_response[0], dtype=np.float64)
    s0 = float(wm_response[1])
    if evals.shape != (3,) or not np.all(np.isfinite(evals)) or np.any(evals <= 0):
        raise ValueError(f"wm_response evals must be 3 positive finite diffusivities (mm^2/s), got {wm_response[0]!r}")
    if not np.isfinite(s0) or s0 <= 0:
        raise ValueError(f"wm_response s0 must be positive and finite, got {s0}")
    return evals, s0


def fit_csd(
    dwi: np.ndarray,
    gtab: GradientTable,
    wm_response: tuple[np.ndarray, float],
    mask: np.ndarray | None = None,
    *,
    lmax: int = CSD_LMAX,
) -> np.ndarray:
    """Single-shell constrained spherical deconvolution (dipy), in equidmri's SH basis.

    Parameters
    ----------
    dwi : ndarray, shape ``(X, Y, Z, N)``
        Diffusion-weighted signal, any real dtype, in the scanner's units.
    gtab : GradientTable
        dipy gradient table of the N volumes (b-values in s/mm^2, b-vectors in the voxel-axis frame).
    wm_response : tuple ``(evals, s0)``
        White-matter response as dipy's ``auto_response_ssst`` returns it: ``evals`` shape ``(3,)``
        in mm^2/s and ``s0`` the non-diffusion-weighted signal of the response voxels.
    mask : ndarray, shape ``(X, Y, Z)``, optional
        Voxels to fit (non-zero = inside). Default: every voxel.
    lmax : int
        Even maximal SH degree of the fODF (dipy ``sh_order_max``); K = (lmax+1)(lmax+2)/2.

    Returns
    -------
    ndarray, shape ``(X, Y, Z, K)`` float64
        fODF SH coefficients, ``descoteaux07`` with ``legacy=False``, voxel-axis frame; zeros
        outside the mask. ``fodf_sh @ sh_matrix(u, lmax, "descoteaux07").T`` equals dipy's
        ``fit.odf`` at the unit vectors ``u``.

    Raises
    ------
    TypeError
        If ``dwi`` or ``mask`` is not a NumPy array, ``gtab`` is not a GradientTable or ``lmax``
        is not an int.
    ValueError
        If ``dwi`` is not 4D, finite and matching ``gtab``, the mask shape differs, the response is
        not ``(3 positive evals, positive s0)`` or ``lmax`` is odd or negative.

    References
    ----------
    Tournier, Calamante & Connelly, NeuroImage 35(4), 2007 (constrained super-resolved spherical
    deconvolution); Descoteaux et al., MRM 58(3), 2007 (the ``descoteaux07`` basis). Equation numbers
    not checked against the papers.
    """
    _check_dwi(dwi, gtab)
    inside = check_mask(mask, dwi.shape[:3])
    evals, s0 = _check_response(wm_response)
    lmax = check_lmax(lmax)
    model = ConstrainedSphericalDeconvModel(gtab, (evals, s0), sh_order_max=lmax)
    logger.debug("dipy CSD (lmax %d) on %d voxels", lmax, int(inside.sum()))
    legacy_sh = model.fit(dwi, mask=inside).shm_coeff  # descoteaux07 with legacy=True, dipy's default for CSD
    fodf_sh = np.array(convert_sh_from_legacy(legacy_sh, "descoteaux07"), dtype=np.float64)
    fodf_sh[~inside] = 0.0
    return fodf_sh


def fit_msmt_csd(
    dwi: np.ndarray,
    gtab: GradientTable,
    responses: TissueResponses,
    mask: np.ndarray | None = None,
    *,
    lmax: int = CSD_LMAX,
) -> np.ndarray:
    """Multi-shell multi-tissue CSD (dipy, WM + GM + CSF): the WM fODF in equidmri's SH basis.

    dipy solves one quadratic programme per voxel with cvxpy, about 20 voxels/s on one core.

    Parameters
    ----------
    dwi : ndarray, shape ``(X, Y, Z, N)``
        Diffusion-weighted signal with b=0 and at least two DW shells, scanner units.
    gtab : GradientTable
        dipy gradient table of the N volumes (b-values in s/mm², b-vectors in the voxel-axis frame).
    responses : TissueResponses
        Multi-shell ``("wm", "gm", "csf")`` responses of the same shells
        (:func:`equidmri.dmri.response.estimate_responses`).
    mask : ndarray, shape ``(X, Y, Z)``, optional
        Voxels to fit (non-zero = inside). Default: every voxel.
    lmax : int
        Even maximal SH degree of the WM fODF.

    Returns
    -------
    ndarray, shape ``(X, Y, Z, K)`` float64
        WM fODF SH coefficients, ``descoteaux07`` with ``legacy=False``, voxel-axis frame; zeros outside the
        mask. The isotropic GM and CSF components are not returned.

    Raises
    ------
    TypeError, ValueError
        As :func:`fit_csd`; ``ValueError`` also if ``responses`` are single-tissue.
    equidmri.extras.MissingExtraError
        If cvxpy, which dipy's MSMT-CSD needs, is not installed (the ``baselines`` extra).

    References
    ----------
    Jeurissen et al., NeuroImage 103, 2014 (MSMT-CSD). Equation numbers not checked against the paper.
    """
    _check_dwi(dwi, gtab)
    inside = check_mask(mask, dwi.shape[:3])
    lmax = check_lmax(lmax)
    require_extra("cvxpy", "baselines", "dipy's MSMT-CSD")
    from dipy.reconst.mcsd import MultiShellDeconvModel, multi_shell_fiber_response  # imports cvxpy: 0.35 s

    if responses.tissues != TISSUES:
        raise ValueError(f"MSMT-CSD needs {TISSUES} responses (multi-shell data), got {responses.tissues}")
    rows = [
        np.column_stack([responses.evals[t], np.full(responses.shells.size, responses.s0[t])])
        for t in range(len(TISSUES))
    ]  # dipy's (S, 4) rows: λ1 λ2 λ3 (mm²/s) and S0, per DW shell
    response = multi_shell_fiber_response(lmax, np.concatenate([[0.0], responses.shells]), *rows, tol=SHELL_TOL)
    model = MultiShellDeconvModel(gtab, response, sh_order_max=lmax, tol=SHELL_TOL)
    logger.debug("dipy MSMT-CSD (lmax %d) on %d voxels", lmax, int(inside.sum()))
    fodf_sh = np.array(convert_sh_from_legacy(model.fit(dwi, mask=inside).shm_coeff, "descoteaux07"))
    fodf_sh[~inside] = 0.0
    return fodf_sh


def fit_dti_fa(dwi: np.ndarray, gtab: GradientTable, mask: np.ndarray | None = None) -> np.ndarray:
    """Fractional anisotropy of a weighted-least-squares diffusion tensor fit (dipy).

    Parameters
    ----------
    dwi : ndarray, shape ``(X, Y, Z, N)``
        Diffusion-weighted signal, any real dtype.
    gtab : GradientTable
        dipy gradient table of the N volumes (b-values in s/mm^2).
    mask : ndarray, shape ``(X, Y, Z)``, optional
        Voxels to fit (non-zero = inside). Default: every voxel.

    Returns
    -------
    ndarray, shape ``(X, Y, Z)`` float64
        FA in [0, 1], dimensionless; zeros outside the mask.

    Raises
    ------
    TypeError
        If ``dwi`` or ``mask`` is not a NumPy array or ``gtab`` is not a GradientTable.
    ValueError
        If ``dwi`` is not 4D, finite and matching ``gtab``, or the mask shape differs.

    References
    ----------
    Basser & Pierpaoli, J. Magn. Reson. B 111, 1996 (FA); Chung, Lu & Henry, NeuroImage 33(2), 2006
    (WLS). Equation numbers not checked against the papers.
    """
    _check_dwi(dwi, gtab)
    inside = check_mask(mask, dwi.shape[:3])
    model = TensorModel(gtab, fit_method=DTI_FIT_METHOD)
    fa = np.zeros(dwi.shape[:3], dtype=np.float64)
    voxels = np.nonzero(inside)
    for start in range(0, voxels[0].size, DTI_CHUNK_VOXELS):  # memory follows the chunk, not the volume
        chunk = tuple(v[start : start + DTI_CHUNK_VOXELS] for v in voxels)
        fa[chunk] = model.fit(dwi[chunk]).fa
    return fa
