"""Calibration of the synthesis on one subject: tissue masks, per-shell prolate WM tensors, GM/CSF diffusivity, SNR.

There is no T1 image here, so the tissues come from the DWI itself: dipy's weighted-least-squares tensor fit
(``dipy.reconst.dti.TensorModel``) on the b=0 volumes and the lowest shell gives FA and MD, and the thresholds of
:mod:`equidmri.dmri.response` (dipy's ``mask_for_response_msmt`` rules as the project corrected them) select

- single-fibre WM: FA > ``FA_THR`` (0.7, as for the CSD response); **every** such voxel is kept, not averaged;
- GM: FA < ``GM_FA_THR`` and ``GM_MD_MIN`` <= MD < ``GM_MD_THR``;
- CSF: FA < ``CSF_FA_THR`` and MD >= ``CSF_MD_THR``;

GM and CSF are then eroded once (``scipy.ndimage.binary_erosion``, 6-connected, the volume border counting as
outside) against partial volume; where erosion leaves fewer than ``MIN_TISSUE_VOXELS`` (a small crop), the
uneroded voxels serve and the statistics say so.

Each shell is fitted **separately** (b=0 volumes plus that shell's volumes; a q-space acquisition's b-values are
first grouped into bins, :func:`calibration_shells`), and each tensor is replaced by its nearest prolate
(axially symmetric) tensor in the Frobenius norm: ``λ∥ = λ1``, ``λ⊥ = (λ2 + λ3) / 2``, direction ``e1``. So a
b-dependence of the apparent diffusivities (kurtosis, the noise floor) survives in the per-shell values.

The SNR is b=0 signal of single-fibre WM over the noise σ: σ from dipy's PIESNO (Koay et al., JMR 2009) on the
background when the volume has one (:func:`equidmri.dmri.mask.has_background`), otherwise (a brain crop) from the
residuals of the lowest shell's tensor fits in the WM voxels, ``σ² = Σ r² / Σ (n - 7)`` (7 parameters per fit).
A scheme of one b=0 and six directions without background leaves neither: σ is then NaN (method ``"none"``, with a
warning) and the synthesis needs an SNR from the caller. (A second b=0 volume gives the fit a residual, so the
spread of repeated b=0 volumes is never the only estimate left.)
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from dipy.core.gradients import gradient_table
from dipy.denoise.noise_estimate import piesno
from dipy.reconst.dti import TensorModel, tensor_prediction
from scipy import ndimage

from equidmri.dmri.gradients import B0_THRESHOLD, Shells, find_shells
from equidmri.dmri.io import DWIData
from equidmri.dmri.mask import compute_mask, has_background
from equidmri.dmri.response import CSF_FA_THR, CSF_MD_THR, FA_THR, GM_FA_THR, GM_MD_MIN, GM_MD_THR
from equidmri.sims.synthesis import CSF_DIFFUSIVITY, GM_DIFFUSIVITY

logger = logging.getLogger(__name__)

MIN_BIN_VOLUMES = 12  # DW volumes per b-value bin: twice the 6 unknowns of a tensor (q-space b-values are binned)
MIN_EIGENVALUE = 0.05e-3  # mm²/s: a fit with a smaller eigenvalue (dipy clips them at ~0) had its b=0 below its DW
# signals, i.e. noise, not tissue; a sixth of WM's radial diffusivity (~0.3e-3, Pierpaoli et al., Radiology 1996)
MIN_TISSUE_VOXELS = 5  # fewer GM (CSF) voxels left after erosion: the uneroded voxels are used
TENSOR_PARAMETERS = 7  # 6 tensor elements + S0: degrees of freedom lost per fit in the residual σ
PIESNO_COILS = 1  # dipy's advice for SENSE / single-coil magnitude data: Rician noise
MIN_NOISE_VOXELS = 50  # background voxels PIESNO must find for its σ to be used
DEFAULT_DIFFUSIVITY = {"gm": GM_DIFFUSIVITY, "csf": CSF_DIFFUSIVITY}  # mm²/s, used when a tissue has no voxel
SUMMARY_PERCENTILES = (5.0, 50.0, 95.0)

__all__ = ["TissueStatistics", "calibrate", "calibration_shells", "segment_tissues"]


def calibration_shells(bvals: np.ndarray, min_volumes: int = MIN_BIN_VOLUMES) -> Shells:
    """Group the DW volumes into the shells the calibration fits one by one.

    Shells are those of :func:`equidmri.dmri.gradients.find_shells` (dipy ``unique_bvals_tolerance``, 20 s/mm²).
    Runs of consecutive shells with fewer than ``min_volumes`` volumes (q-space or DSI-like sampling, e.g. dipy's
    ``small_101D`` with 55 distinct b-values) are merged in order of b-value until each bin holds ``min_volumes``;
    a short remainder joins the bin below. A bin's b-value is the mean of its volumes'.

    Parameters
    ----------
    bvals : ndarray, shape ``(N,)``
        b-values, s/mm².
    min_volumes : int
        Fewest DW volumes of a bin (>= 1).

    Returns
    -------
    Shells
        ``bvals`` ``(S,)`` the bins' mean b-values, ascending; ``index`` ``(N,)`` the bin of each volume, -1 for b=0.

    Raises
    ------
    ValueError
        As :func:`~equidmri.dmri.gradients.find_shells`, or if ``min_volumes`` < 1.
    """
    if min_volumes < 1:
        raise ValueError(f"min_volumes must be >= 1, got {min_volumes}")
    bvals = np.asarray(bvals, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="There is overlap in clustering", category=UserWarning)  # q-space
        shells = find_shells(bvals)
    counts = shells.n_directions
    groups: list[list[int]] = [[]]
    for shell in range(counts.size):
        if groups[-1] and counts[groups[-1]].sum() >= min_volumes:
            groups.append([])
        groups[-1].append(shell)
    if len(groups) > 1 and counts[groups[-1]].sum() < min_volumes:
        remainder = groups.pop()
        groups[-1].extend(remainder)
    to_bin = np.empty(shells.bvals.size, dtype=np.int64)
    for number, members in enumerate(groups):
        to_bin[members] = number
    index = np.where(shells.index >= 0, to_bin[np.maximum(shells.index, 0)], -1)
    return Shells(bvals=np.array([bvals[index == b].mean() for b in range(len(groups))]), index=index)


def _fit_shell(dwi: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, volumes: np.ndarray, voxels: np.ndarray):
    """dipy WLS tensor fit of the ``volumes`` (b=0 and one shell) in ``voxels``; also returns the gradient table."""
    gtab = gradient_table(bvals[volumes], bvecs=bvecs[volumes], b0_threshold=B0_THRESHOLD)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # log of zero signal in a voxel: NaN, dropped later
        fit = TensorModel(gtab, fit_method="WLS", return_S0_hat=True).fit(dwi[..., volumes], mask=voxels)
    return fit, gtab


def segment_tissues(fa: np.ndarray, md: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """Single-fibre WM, GM and CSF masks from FA and MD (thresholds and erosion in the module docstring).

    Parameters
    ----------
    fa : ndarray, shape ``(X, Y, Z)``
        Fractional anisotropy, dimensionless (NaN is outside every tissue).
    md : ndarray, shape ``(X, Y, Z)``
        Mean diffusivity, mm²/s.
    mask : ndarray, shape ``(X, Y, Z)`` bool
        Brain mask.

    Returns
    -------
    dict
        ``wm``, ``gm``, ``csf``: bool masks ``(X, Y, Z)``; ``eroded``: ``{"gm": bool, "csf": bool}``, whether the
        eroded mask was kept.

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    if not fa.shape == md.shape == mask.shape:
        raise ValueError(f"fa, md and mask must share a shape, got {fa.shape}, {md.shape} and {mask.shape}")
    inside = mask & np.isfinite(fa) & np.isfinite(md)
    fa, md = np.nan_to_num(fa), np.nan_to_num(md)
    masks = {
        "wm": inside & (fa > FA_THR),
        "gm": inside & (fa < GM_FA_THR) & (md >= GM_MD_MIN) & (md < GM_MD_THR),
        "csf": inside & (fa < CSF_FA_THR) & (md >= CSF_MD_THR),
    }
    structure = ndimage.generate_binary_structure(3, 1)
    eroded = {}
    for tissue in ("gm", "csf"):
        shrunk = ndimage.binary_erosion(masks[tissue], structure=structure, border_value=0)
        eroded[tissue] = int(shrunk.sum()) >= MIN_TISSUE_VOXELS
        if eroded[tissue]:
            masks[tissue] = shrunk
    return {**masks, "eroded": eroded}


@dataclass(frozen=True, eq=False)
class TissueStatistics:
    """One subject's calibrated tissue statistics and acquisition (voxel-axis frame).

    Attributes
    ----------
    bvals : ndarray, shape ``(N,)``
        b-values of the subject's volumes, s/mm².
    bvecs : ndarray, shape ``(N, 3)``
        Unit b-vectors, voxel-axis frame (b=0 rows zero).
    shells : Shells
        The calibration shells (:func:`calibration_shells`), S of them.
    wm_lambda_par, wm_lambda_perp : ndarray, shape ``(W, S)``
        λ∥ and λ⊥ (mm²/s) of the prolate tensor of each single-fibre WM voxel on each shell; λ⊥ >= 0.
    wm_dirs : ndarray, shape ``(W, S, 3)``
        Unit principal direction of each voxel's tensor on each shell, voxel-axis frame.
    gm_md, csf_md : ndarray, shape ``(G, S)`` and ``(C, S)``
        Mean diffusivity (mm²/s) of each GM / CSF voxel on each shell; one row of the module's default when the
        tissue has no voxel (see ``sources``).
    sources : dict
        ``{"gm": ..., "csf": ...}``: ``"eroded"``, ``"not eroded"`` (erosion left too few) or ``"default"``.
    s0_wm : float
        Mean b=0 signal of the WM voxels, scanner units.
    sigma : float
        Noise σ, scanner units; NaN when it could not be estimated.
    snr_method : str
        ``"piesno"``, ``"dti-residual"`` or ``"none"`` (σ is NaN: the noise could not be estimated).
    """

    bvals: np.ndarray
    bvecs: np.ndarray
    shells: Shells
    wm_lambda_par: np.ndarray
    wm_lambda_perp: np.ndarray
    wm_dirs: np.ndarray
    gm_md: np.ndarray
    csf_md: np.ndarray
    sources: dict[str, str]
    s0_wm: float
    sigma: float
    snr_method: str

    def __post_init__(self) -> None:
        for name in ("bvals", "bvecs", "wm_lambda_par", "wm_lambda_perp", "wm_dirs", "gm_md", "csf_md"):
            value = np.array(getattr(self, name), dtype=np.float64)  # an owned, read-only copy
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        s = self.shells.bvals.size
        w = self.wm_lambda_par.shape[0]
        if w == 0:
            raise ValueError("TissueStatistics needs at least one WM voxel")
        if self.wm_lambda_par.shape != (w, s) or self.wm_lambda_perp.shape != (w, s) or self.wm_dirs.shape != (w, s, 3):
            raise ValueError(
                f"WM arrays must be (W, S) = ({w}, {s}) and (W, S, 3), got {self.wm_lambda_par.shape}, "
                f"{self.wm_lambda_perp.shape} and {self.wm_dirs.shape}"
            )
        for name in ("gm_md", "csf_md"):
            value = getattr(self, name)
            if value.ndim != 2 or value.shape[1] != s or value.shape[0] == 0:
                raise ValueError(f"{name} must be (voxels >= 1, S = {s}), got {value.shape}")
        if self.bvals.shape != (self.shells.index.size,) or self.bvecs.shape != (self.bvals.size, 3):
            raise ValueError(
                f"bvals (N,) and bvecs (N, 3) must match the shells' N = {self.shells.index.size}, got "
                f"{self.bvals.shape} and {self.bvecs.shape}"
            )

    @property
    def snr(self) -> float:
        """b=0 WM signal over the noise σ, dimensionless (``inf`` when σ = 0, NaN when σ is unknown)."""
        if np.isnan(self.sigma):
            return float("nan")
        return float(self.s0_wm / self.sigma) if self.sigma > 0 else float("inf")

    def summary(self) -> dict[str, Any]:
        """JSON-friendly statistics: voxel counts, GM/CSF mean MD and per-shell λ∥/λ⊥ summaries (mm²/s)."""

        def spread(values: np.ndarray) -> dict[str, float]:
            return {
                "mean": float(values.mean()),
                "std": float(values.std()),
                **{f"p{p:g}": float(np.percentile(values, p)) for p in SUMMARY_PERCENTILES},
            }

        shells = []
        for s, b in enumerate(self.shells.bvals):
            shells.append(
                {
                    "bval": float(b),
                    "volumes": int(self.shells.n_directions[s]),
                    "bval_range": [float(self.bvals[self.shells.index == s].min()),
                                   float(self.bvals[self.shells.index == s].max())],
                    "wm_lambda_par": spread(self.wm_lambda_par[:, s]),
                    "wm_lambda_perp": spread(self.wm_lambda_perp[:, s]),
                    "gm_md_mean": float(self.gm_md[:, s].mean()),
                    "csf_md_mean": float(self.csf_md[:, s].mean()),
                }
            )  # fmt: skip
        voxels = {"wm": int(self.wm_lambda_par.shape[0])}
        for tissue in ("gm", "csf"):
            voxels[tissue] = 0 if self.sources[tissue] == "default" else int(getattr(self, f"{tissue}_md").shape[0])
        return {
            "units": {"diffusivity": "mm²/s", "bval": "s/mm²", "s0": "scanner units"},
            "voxels": voxels,
            "gm_csf_source": dict(self.sources),
            "gm_md_mean": float(self.gm_md.mean()),
            "csf_md_mean": float(self.csf_md.mean()),
            "shells": shells,
            "snr": self.snr,
            "sigma": self.sigma,
            "s0_wm": self.s0_wm,
            "snr_method": self.snr_method,
            "thresholds": {
                "wm_fa_min": FA_THR,
                "gm": {"fa_max": GM_FA_THR, "md_min": GM_MD_MIN, "md_max": GM_MD_THR},
                "csf": {"fa_max": CSF_FA_THR, "md_min": CSF_MD_THR},
            },
        }


def _estimate_noise(
    dwi: np.ndarray, b0s: np.ndarray, volumes: np.ndarray, fit, gtab, valid: np.ndarray, wm: np.ndarray
) -> tuple[float, str]:
    """Noise σ (scanner units) and its method (module docstring): PIESNO on the background, else the residuals of
    the lowest shell's tensor ``fit`` (on the ``volumes``, table ``gtab``) in the ``wm`` voxels, else NaN."""
    b0 = dwi[..., b0s].mean(-1)
    if has_background(b0, valid):
        sigma, noise = piesno(dwi, N=PIESNO_COILS, return_mask=True)  # σ per slice (last spatial axis)
        sigma = np.asarray(sigma, dtype=np.float64)
        usable = sigma[(sigma > 0) & noise.any(axis=(0, 1))]
        if int(noise.sum()) >= MIN_NOISE_VOXELS and usable.size:
            return float(np.median(usable)), "piesno"
        logger.info("PIESNO found %d background voxels; noise from the tensor-fit residuals", int(noise.sum()))
    dof = int(volumes.sum()) - TENSOR_PARAMETERS
    if dof > 0:
        predicted = tensor_prediction(fit.model_params[wm], gtab, S0=fit.S0_hat[wm])  # (W, n)
        residuals = dwi[wm][:, volumes] - predicted
        return float(np.sqrt((residuals**2).sum() / (int(wm.sum()) * dof))), "dti-residual"
    logger.warning(
        "the noise cannot be estimated: no background for PIESNO and no residual of the tensor fit (%d volumes for "
        "%d parameters); give the SNR of the synthetic noise yourself",
        int(volumes.sum()),
        TENSOR_PARAMETERS,
    )
    return float("nan"), "none"


def _isotropic_diffusivities(
    tissues: dict[str, Any], md: np.ndarray, good: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Per-voxel, per-shell MD ``(V, S)`` of GM and CSF (the default where a tissue has no voxel) and its source."""
    iso, sources = {}, {}
    for tissue in ("gm", "csf"):
        voxels = tissues[tissue] & good
        if voxels.any():
            iso[tissue] = np.maximum(md[voxels], 0.0)
            sources[tissue] = "eroded" if tissues["eroded"][tissue] else "not eroded"
            continue
        iso[tissue], sources[tissue] = np.full((1, md.shape[-1]), DEFAULT_DIFFUSIVITY[tissue]), "default"
        logger.warning(
            "no %s voxel found (thresholds: equidmri.synth.calibration); its diffusivity is the default %.2e mm²/s",
            tissue,
            DEFAULT_DIFFUSIVITY[tissue],
        )
    return iso, sources


def calibrate(data: DWIData, mask: np.ndarray | None = None) -> TissueStatistics:
    """Calibrate the synthesis on one subject (method in the module docstring).

    Parameters
    ----------
    data : DWIData
        The subject (:func:`equidmri.dmri.io.load_dwi` or :func:`equidmri.data.load_real_volume`).
    mask : ndarray, shape ``(X, Y, Z)`` bool, optional
        Brain mask; default ``data.mask``, else :func:`equidmri.dmri.mask.compute_mask`.

    Returns
    -------
    TissueStatistics

    Raises
    ------
    ValueError
        If the mask's shape differs from the volume's, or no voxel of the mask has FA > ``FA_THR`` (0.7) and every
        eigenvalue above ``MIN_EIGENVALUE`` on every shell.

    References
    ----------
    Sadegheih, Weninger & Merhof 2023 (synthesis from a subject's tissue statistics); Tournier et al., NeuroImage
    2004 (FA > 0.7 single-fibre voxels); Koay, Özarslan & Pierpaoli, JMR 199, 2009 (PIESNO).
    """
    gtab = data.gtab()
    if mask is None:
        mask = data.mask if data.mask is not None else compute_mask(data.dwi, gtab, data.valid)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != data.dwi.shape[:3]:
        raise ValueError(f"mask must have shape {data.dwi.shape[:3]}, got {mask.shape}")
    mask = mask & data.valid  # a new array: the caller's mask is not changed
    shells = calibration_shells(data.bvals)
    b0s = shells.index < 0
    lowest, lowest_gtab = _fit_shell(data.dwi, data.bvals, data.bvecs, b0s | (shells.index == 0), mask)
    tissues = segment_tissues(lowest.fa, lowest.md, mask)
    union = tissues["wm"] | tissues["gm"] | tissues["csf"]
    fits = [lowest] + [
        _fit_shell(data.dwi, data.bvals, data.bvecs, b0s | (shells.index == s), union)[0]
        for s in range(1, shells.bvals.size)
    ]
    evals = np.stack([fit.evals for fit in fits], axis=-2)  # (X, Y, Z, S, 3)
    lam_par, lam_perp = evals[..., 0], 0.5 * (evals[..., 1] + evals[..., 2])
    good = np.all(np.isfinite(evals) & (evals > MIN_EIGENVALUE), axis=(-2, -1))  # on every shell
    wm = tissues["wm"] & good
    if not wm.any():
        raise ValueError(
            f"no voxel of the mask has FA > {FA_THR} and eigenvalues > {MIN_EIGENVALUE} mm²/s on every shell: "
            "there is no single-fibre white matter to calibrate on; check that the mask covers white matter"
        )
    dirs = np.stack([fit.evecs[..., :, 0] for fit in fits], axis=-2)  # (X, Y, Z, S, 3)
    iso, sources = _isotropic_diffusivities(tissues, evals.mean(-1), good)
    volumes = b0s | (shells.index == 0)
    sigma, method = _estimate_noise(data.dwi, b0s, volumes, lowest, lowest_gtab, data.valid, wm)
    return TissueStatistics(
        bvals=data.bvals.copy(),
        bvecs=data.bvecs.copy(),
        shells=shells,
        wm_lambda_par=lam_par[wm],
        wm_lambda_perp=np.maximum(lam_perp[wm], 0.0),
        wm_dirs=dirs[wm],
        gm_md=iso["gm"],
        csf_md=iso["csf"],
        sources=sources,
        s0_wm=float(data.dwi[wm][:, b0s].mean()),
        sigma=sigma,
        snr_method=method,
    )
