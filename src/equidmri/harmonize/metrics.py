"""How close harmonized site-A scans come to site B: signal, FA and MD errors, SSIM, Wilcoxon tests.

Errors are computed between the harmonized A and B on the same protocol (B's), inside a mask:

- **signal MSE**: mean squared difference of the diffusion attenuation ``S / S0`` (each volume divided by its
  own mean b=0), over the DW volumes and masked voxels; per shell as well;
- **FA MSE** and **MD MSE**: of dipy's weighted-least-squares DTI fit (:class:`dipy.reconst.dti.TensorModel`)
  to all shells together, and to the b=0 volumes plus one shell for the per-shell rows; MD in mm²/s;
- **signal MSE against noise-free B** (simulations): the same, against B without its noise, so that B's own
  noise does not count;
- **SSIM**: scikit-image's structural similarity of each DW volume's attenuation (3D, zero outside the mask,
  ``data_range`` 1), averaged over the volumes: a structural image metric in place of the paper's LPIPS,
  which needs pretrained network weights that cannot be downloaded here.

:func:`wilcoxon_test` compares two methods' per-subject errors (scipy's signed-rank test).

References
----------
Sadegheih, Weninger & Merhof 2023 (Tables 1 and 2: MSE of the raw signal, FA and MD; LPIPS); Wang et al., IEEE
TIP 13(4), 2004 (SSIM); Wilcoxon, Biometrics Bulletin 1(6), 1945.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from dipy.core.gradients import GradientTable
from dipy.reconst.dti import TensorModel
from scipy.stats import wilcoxon

from equidmri.dmri.baselines import DTI_FIT_METHOD
from equidmri.dmri.gradients import find_shells, make_gtab
from equidmri.dmri.mask import check_mask
from equidmri.extras import require_extra
from equidmri.harmonize.shells import attenuation

SSIM_DATA_RANGE = 1.0  # attenuation S / S0 lies in [0, 1] without noise
METRICS = ("signal_mse", "fa_mse", "md_mse", "ssim")  # per subject, all shells and per shell
NOISE_FREE_METRIC = "signal_mse_noise_free"  # signal MSE against B's noise-free signal, where it is known
LOWER_IS_BETTER = {"signal_mse": True, "fa_mse": True, "md_mse": True, "ssim": False, NOISE_FREE_METRIC: True}

__all__ = [
    "LOWER_IS_BETTER",
    "METRICS",
    "NOISE_FREE_METRIC",
    "dti_maps",
    "dti_maps_by_shell",
    "harmonization_errors",
    "shell_groups",
    "ssim_per_volume",
    "wilcoxon_test",
]


def dti_maps(
    dwi: np.ndarray, gtab: GradientTable, mask: np.ndarray, model: TensorModel | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """FA and MD (mm²/s) of dipy's DTI fit inside ``mask``, each ``(M,)`` for the M masked voxels.

    ``model`` is a ``TensorModel`` of ``gtab`` to reuse (default: a new weighted-least-squares one).

    References
    ----------
    Basser & Pierpaoli, J. Magn. Reson. B 111, 1996 (FA, MD); Chung, Lu & Henry, NeuroImage 33(2), 2006 (WLS).
    """
    model = model if model is not None else TensorModel(gtab, fit_method=DTI_FIT_METHOD)
    with warnings.catch_warnings():  # noisy voxels with negative eigenvalues are dipy's business, not ours
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = model.fit(dwi, mask=mask)
    return np.nan_to_num(np.asarray(fit.fa)[mask]), np.nan_to_num(np.asarray(fit.md)[mask])


def shell_groups(bvals: np.ndarray) -> dict[str, np.ndarray]:
    """The volumes of each set the errors are reported on: ``"all"``, and ``"b=<b>"`` (rounded b-value, s/mm²)
    for each shell with the b=0 volumes; each a ``(N,)`` bool array over ``bvals`` ``(N,)`` (s/mm²)."""
    shells = find_shells(bvals)
    b0 = shells.index < 0
    groups = {"all": np.ones(len(bvals), dtype=bool)}
    groups.update({f"b={bval:.0f}": b0 | (shells.index == s) for s, bval in enumerate(shells.bvals)})
    return groups


def dti_maps_by_shell(
    dwi: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, mask: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`dti_maps` (FA, MD in mm²/s, each ``(M,)``) of ``dwi`` ``(X, Y, Z, N)`` on each of
    :func:`shell_groups` ``(bvals)``: the maps :func:`harmonization_errors` compares."""
    return {
        key: dti_maps(dwi[..., keep], make_gtab(bvals[keep], bvecs[keep]), mask)
        for key, keep in shell_groups(bvals).items()
    }


def ssim_per_volume(harmonized: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """SSIM of each volume of two ``(X, Y, Z, N)`` attenuation series, zero outside ``mask``: ``(N,)``.

    Each volume is compared in 3D with scikit-image's default 7-voxel window (every axis must be >= 7).

    Raises
    ------
    equidmri.extras.MissingExtraError
        If scikit-image (the ``bench`` extra) is not installed.
    """
    metrics = require_extra("skimage.metrics", "bench", "SSIM", package="scikit-image")
    inside = mask[..., None]
    a, b = np.where(inside, harmonized, 0.0), np.where(inside, reference, 0.0)
    return np.array(
        [metrics.structural_similarity(a[..., n], b[..., n], data_range=SSIM_DATA_RANGE) for n in range(a.shape[-1])]
    )


def _errors(
    dwi: tuple[np.ndarray, np.ndarray],
    signal: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    ssim: np.ndarray,
    gtab: GradientTable,
    mask: np.ndarray,
) -> dict[str, float]:
    """The metrics of one set of volumes: scans ``dwi`` (harmonized, reference), their attenuations ``signal``
    (harmonized, reference, noise-free reference or None) and SSIM per volume, all on ``gtab``'s volumes."""
    dw = ~gtab.b0s_mask
    e_h, e_r, e_n = (None if e is None else e[mask][:, dw] for e in signal)
    model = TensorModel(gtab, fit_method=DTI_FIT_METHOD)
    (fa_h, md_h), (fa_r, md_r) = (dti_maps(scan, gtab, mask, model) for scan in dwi)
    out = {
        "signal_mse": float(np.mean((e_h - e_r) ** 2)),
        "fa_mse": float(np.mean((fa_h - fa_r) ** 2)),
        "md_mse": float(np.mean((md_h - md_r) ** 2)),
        "ssim": float(np.mean(ssim[dw])),
    }
    if e_n is not None:
        out[NOISE_FREE_METRIC] = float(np.mean((e_h - e_n) ** 2))
    return out


def harmonization_errors(
    harmonized: np.ndarray,
    reference: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    mask: np.ndarray,
    noise_free: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Signal, FA and MD errors and SSIM of a harmonized scan against the reference, on all shells and per shell.

    Parameters
    ----------
    harmonized, reference : ndarray, shape ``(X, Y, Z, N)``
        The harmonized site-A scan and site B's scan, on the same protocol, scanner units (each is divided by
        its own mean b=0).
    bvals : ndarray, shape ``(N,)``
        Nominal b-values, s/mm², with a b=0 volume.
    bvecs : ndarray, shape ``(N, 3)``
        Unit b-vectors, voxel-axis frame.
    mask : ndarray, shape ``(X, Y, Z)`` bool
    noise_free : ndarray, shape ``(X, Y, Z, N)``, optional
        The reference without its noise (simulations): adds the signal MSE against it,
        :data:`NOISE_FREE_METRIC`, which leaves out the reference's own noise.

    Returns
    -------
    dict
        ``"all"`` and ``"b=<b>"`` for each shell (rounded b-value in s/mm²) -> ``{metric: value}`` with
        :data:`METRICS`: signal MSE (attenuation², dimensionless), FA MSE, MD MSE ((mm²/s)²) and mean SSIM
        (and :data:`NOISE_FREE_METRIC` when ``noise_free`` is given).

    Raises
    ------
    ValueError
        If the shapes disagree, the mask is empty or there is no b=0 volume.
    """
    shapes_differ = harmonized.shape != reference.shape or (
        noise_free is not None and noise_free.shape != reference.shape
    )
    if shapes_differ or harmonized.ndim != 4 or harmonized.shape[-1] != len(bvals):
        raise ValueError(
            f"harmonized {harmonized.shape} and reference {reference.shape} need shape (X, Y, Z, {len(bvals)})"
        )
    mask = check_mask(mask, harmonized.shape[:3])
    if not mask.any():
        raise ValueError("the mask is empty")
    b0 = find_shells(bvals).index < 0
    signal = tuple(None if scan is None else attenuation(scan, bvals) for scan in (harmonized, reference, noise_free))
    ssim = np.full(len(bvals), np.nan)
    ssim[~b0] = ssim_per_volume(signal[0][..., ~b0], signal[1][..., ~b0], mask)
    out = {}
    for key, keep in shell_groups(bvals).items():
        subset = tuple(None if e is None else e[..., keep] for e in signal)
        gtab = make_gtab(bvals[keep], bvecs[keep])
        out[key] = _errors((harmonized[..., keep], reference[..., keep]), subset, ssim[keep], gtab, mask)
    return out


def wilcoxon_test(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of paired per-subject values ``a`` and ``b`` ``(n,)``.

    Returns
    -------
    dict
        ``n``, ``median_difference`` (a - b), ``statistic`` and ``p`` (None when n < 2 or every difference is 0).

    Raises
    ------
    ValueError
        If ``a`` and ``b`` differ in shape or are not 1-D.

    References
    ----------
    Wilcoxon, Biometrics Bulletin 1(6), 1945; scipy ``scipy.stats.wilcoxon``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be 1-D of the same length, got {a.shape} and {b.shape}")
    difference = a - b
    result = {"n": int(a.size), "median_difference": float(np.median(difference)) if a.size else None}
    if a.size < 2 or not np.any(difference):
        return {**result, "statistic": None, "p": None}
    test = wilcoxon(a, b)
    return {**result, "statistic": float(test.statistic), "p": float(test.pvalue)}
