"""Tissue response functions: estimation with dipy and their zonal SH coefficients.

A response is the signal of a single fibre along +z (WM) or of an isotropic compartment (GM, CSF),
given per DW shell by a tensor's eigenvalues (mm²/s) and the tissue's b=0 signal.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from dipy.core.gradients import GradientTable, gradient_table
from dipy.reconst.csdeconv import mask_for_response_ssst, response_from_mask_ssst
from scipy.special import eval_legendre, roots_legendre

from equidmri.dmri.gradients import SHELL_TOL, Shells
from equidmri.sphere.sh import check_lmax

TISSUES = ("wm", "gm", "csf")
FA_THR = 0.7  # WM FA threshold, dipy's mask_for_response_ssst / mask_for_response_msmt default
FA_THR_FLOOR = 0.5  # lowest WM FA threshold tried before falling back to the highest-FA voxels
FA_FALLBACK_MIN = 0.4  # the fallback's WM voxels must still have FA above this (a crossing or GM voxel is below)
FA_THR_STEP = 0.1  # decrement of the WM FA threshold when too few voxels pass
MIN_RESPONSE_VOXELS = 10  # voxels; fewer WM voxels make the response too noisy
ROI_RADII = 10  # voxels, dipy's default half-width of the cuboid ROI at the volume centre
GM_FA_THR = 0.2  # dipy mask_for_response_msmt default: GM has 0 < FA < 0.2
GM_MD_MIN = 0.0007  # mm²/s, dipy mask_for_response_msmt's GM upper bound, used here as a LOWER bound (below: WM)
GM_MD_THR = 0.0011  # mm²/s, GM upper bound: cortical GM MD is about 0.8-1.0e-3 (Helenius et al., AJNR 2002)
CSF_FA_THR = 0.1  # dipy mask_for_response_msmt default: CSF has 0 < FA < 0.1
CSF_MD_THR = 0.002  # mm²/s, dipy's default value, used here as a LOWER bound: CSF has MD >= 0.002
DTI_BMAX = 1200.0  # s/mm², above this dipy warns that DTI (the tissue masks) is biased
MIN_DTI_VOLUMES = 7  # b=0 + 6 directions: the fewest a tensor fit needs
N_QUADRATURE = 128  # Gauss-Legendre nodes: exact to 1e-12 for lmax <= 18 and b·(λ1 - λ⊥) up to ~100

__all__ = [
    "TISSUES",
    "TissueResponses",
    "estimate_responses",
]


@lru_cache(maxsize=4)
def _legendre_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = roots_legendre(n)
    return nodes, weights


@dataclass(frozen=True, eq=False)
class TissueResponses:
    """Axially symmetric response of each tissue on each DW shell.

    Attributes
    ----------
    tissues : tuple of str
        ``("wm",)`` (single-shell) or ``("wm", "gm", "csf")`` (multi-shell).
    shells : ndarray, shape ``(S,)`` float64
        DW shell b-values, s/mm², ascending.
    evals : ndarray, shape ``(T, S, 3)`` float64
        Tensor eigenvalues per tissue and shell, mm²/s, descending; the three are equal for GM/CSF.
    s0 : ndarray, shape ``(T,)`` float64
        b=0 signal of each tissue, scanner units.
    """

    tissues: tuple[str, ...]
    shells: np.ndarray
    evals: np.ndarray
    s0: np.ndarray

    def __post_init__(self) -> None:
        tissues = tuple(self.tissues)
        if tissues not in (("wm",), TISSUES):
            raise ValueError(f"tissues must be ('wm',) or {TISSUES}, got {tissues}")
        shells = np.array(self.shells, dtype=np.float64)
        evals = np.array(self.evals, dtype=np.float64)
        s0 = np.array(self.s0, dtype=np.float64)
        if shells.ndim != 1 or shells.size == 0 or not np.all(np.isfinite(shells) & (shells > 0)):
            raise ValueError(f"shells must be a non-empty (S,) array of positive b-values, got {shells}")
        if np.any(np.diff(shells) <= 0):
            raise ValueError(f"shells must be strictly ascending, got {shells}")
        if evals.shape != (len(tissues), shells.size, 3) or s0.shape != (len(tissues),):
            raise ValueError(
                f"evals must be (T, S, 3) = ({len(tissues)}, {shells.size}, 3) and s0 (T,) = ({len(tissues)},), "
                f"got {evals.shape} and {s0.shape}"
            )
        if not np.all(np.isfinite(evals) & (evals >= 0)):
            raise ValueError(f"evals must be finite and >= 0 mm²/s, got {evals.tolist()}")
        if not np.all(np.isfinite(s0) & (s0 >= 0)) or s0[0] <= 0:
            raise ValueError(f"s0 must be finite and >= 0 with a positive WM value, got {s0.tolist()}")
        object.__setattr__(self, "tissues", tissues)
        for name, value in (("shells", shells), ("evals", evals), ("s0", s0)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    def on_shells(self, bvals: np.ndarray) -> TissueResponses:
        """The responses of the DW shells ``bvals`` (s/mm², ascending), each within ``SHELL_TOL`` of one of ours.

        Raises
        ------
        ValueError
            If a b-value matches none of :attr:`shells`.
        """
        bvals = np.asarray(bvals, dtype=np.float64)
        distance = np.abs(bvals[:, None] - self.shells[None, :])
        if bvals.size == 0 or np.any(distance.min(axis=1) > SHELL_TOL):
            raise ValueError(
                f"shells {np.round(bvals).tolist()} s/mm² are not all among the responses' "
                f"{np.round(self.shells).tolist()} s/mm²"
            )
        keep = distance.argmin(axis=1)
        return TissueResponses(self.tissues, self.shells[keep], self.evals[:, keep], self.s0)

    def zonal(self, lmax: int) -> np.ndarray:
        """Zonal SH coefficients ``r_l0`` of every response, normalised by the WM b=0 signal.

        ``R_t^b(t) = s0_t / s0_wm · exp(-b (λ⊥ + (λ1 - λ⊥) t²))``, ``t = cos θ``, ``λ⊥ = (λ2 + λ3)/2``,
        and ``r_l0 = 2π ∫ R(t) sqrt((2l+1)/(4π)) P_l(t) dt`` over [-1, 1] (Gauss-Legendre).
        ``descoteaux07`` and ``tournier07`` share ``Y_l0``, so the result serves both bases.

        Parameters
        ----------
        lmax : int
            Even maximal degree.

        Returns
        -------
        ndarray, shape ``(T, 1 + S, lmax // 2 + 1)`` float64
            Row 0 is b=0 (isotropic: ``r_00 = sqrt(4π) s0_t / s0_wm``), rows 1.. the DW shells;
            column j is degree ``l = 2j``. Isotropic responses have zeros for l > 0. Dimensionless.

        Raises
        ------
        ValueError
            If ``lmax`` is not even and >= 0.

        References
        ----------
        Tournier et al., NeuroImage 2004, eq. 6 (Funk-Hecke); Jeurissen et al., NeuroImage 2014, eq. 2.
        """
        degrees = np.arange(0, check_lmax(lmax) + 1, 2)
        nodes, weights = _legendre_rule(N_QUADRATURE)
        legendre = eval_legendre(degrees[:, None], nodes[None, :])  # (L, n)
        norm = np.sqrt((2 * degrees + 1) / (4 * math.pi))  # (L,)
        ratio = self.s0 / self.s0[0]  # (T,)
        lam_par = self.evals[..., 0]  # (T, S)
        lam_perp = 0.5 * (self.evals[..., 1] + self.evals[..., 2])
        exponent = lam_perp[..., None] + (lam_par - lam_perp)[..., None] * nodes**2  # (T, S, n)
        profile = np.exp(-self.shells[None, :, None] * exponent)
        dw = 2 * math.pi * np.einsum("tsn,n,ln->tsl", profile, weights, legendre) * norm
        dw *= ratio[:, None, None]
        dw[..., 1:][lam_par == lam_perp] = 0.0  # isotropic: exactly zonal degree 0
        out = np.zeros((len(self.tissues), 1 + self.shells.size, degrees.size))
        out[:, 0, 0] = math.sqrt(4 * math.pi) * ratio
        out[:, 1:] = dw
        return out

    def dipy_wm_response(self) -> tuple[np.ndarray, float]:
        """WM response on the first shell as dipy CSD takes it: ``(evals (3,) mm²/s, s0)``."""
        return self.evals[0, 0].copy(), float(self.s0[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (lists and floats); inverse of :meth:`from_dict`."""
        return {
            "tissues": list(self.tissues),
            "shells": self.shells.tolist(),
            "evals": self.evals.tolist(),
            "s0": self.s0.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TissueResponses:
        """Rebuild from :meth:`to_dict` output.

        Raises
        ------
        TypeError
            If ``d`` is not a mapping.
        ValueError
            If a key is missing or a value is invalid (see the class checks).
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"from_dict needs a mapping, got {type(d).__name__}")
        missing = [key for key in ("tissues", "shells", "evals", "s0") if key not in d]
        if missing:
            raise ValueError(f"response dict lacks keys {missing}, got keys {sorted(d)}")
        return cls(tissues=tuple(d["tissues"]), shells=d["shells"], evals=d["evals"], s0=d["s0"])


def _wm_thresholds(fa_thr: float) -> list[float]:
    steps = max(0, int(math.floor((fa_thr - FA_THR_FLOOR) / FA_THR_STEP + 1e-9)))
    return [round(fa_thr - k * FA_THR_STEP, 10) for k in range(steps + 1)]


def _select_wm(
    select: Callable[[float], tuple[np.ndarray, ...]], fa_thr: float, fa_map: Callable[[], np.ndarray]
) -> tuple[np.ndarray, ...]:
    """Call ``select(thr)`` (WM mask first) with lower FA thresholds until enough WM voxels pass.

    When too few pass even at ``FA_THR_FLOOR`` (a small field of view, thick slices), the WM mask becomes the
    ``MIN_RESPONSE_VOXELS`` voxels of highest FA, ``fa_map()`` ``(X, Y, Z)``, provided their FA exceeds
    ``FA_FALLBACK_MIN``; one warning says so.
    """
    counts = []
    for thr in _wm_thresholds(fa_thr):
        masks = select(thr)
        counts.append(int(np.count_nonzero(masks[0])))
        if counts[-1] >= MIN_RESPONSE_VOXELS:
            if thr != fa_thr:
                warnings.warn(
                    f"only {counts[0]} WM voxel(s) with FA > {fa_thr} (need {MIN_RESPONSE_VOXELS}) for the response: "
                    f"FA threshold lowered to {thr} ({counts[-1]} voxels)",
                    stacklevel=4,  # the caller of estimate_responses (through _estimate_* and this helper)
                )
            return masks
    fa = fa_map()
    candidates = np.flatnonzero(fa > FA_FALLBACK_MIN)
    if candidates.size < MIN_RESPONSE_VOXELS:
        raise ValueError(
            f"fewer than {MIN_RESPONSE_VOXELS} voxels of the mask look like single-fibre white matter "
            f"(FA > {FA_FALLBACK_MIN}; found {candidates.size}): the WM response cannot be estimated; "
            "check that the mask covers white matter and that the volume is a brain DWI"
        )
    top = candidates[np.argsort(fa.ravel()[candidates])[::-1][:MIN_RESPONSE_VOXELS]]
    wm = np.zeros(fa.shape, dtype=bool)
    wm.flat[top] = True
    warnings.warn(
        f"fewer than {MIN_RESPONSE_VOXELS} WM voxels with FA > {FA_THR_FLOOR}: the WM response uses the "
        f"{MIN_RESPONSE_VOXELS} voxels of highest FA ({fa.ravel()[top].min():.2f} to {fa.ravel()[top].max():.2f})",
        stacklevel=4,  # the caller of estimate_responses (through _estimate_* and this helper)
    )
    return (wm, *masks[1:])


def _fa_in_mask(dwi: np.ndarray, gtab: GradientTable, mask: np.ndarray) -> Callable[[], np.ndarray]:
    """Deferred DTI FA ``(X, Y, Z)`` inside ``mask`` (zero elsewhere), for the WM fallback."""

    def fa() -> np.ndarray:
        from equidmri.dmri.baselines import fit_dti_fa  # baselines imports this module

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)  # dipy's bias note above b=1200
            return np.nan_to_num(fit_dti_fa(dwi, gtab, mask))

    return fa


def _check_inputs(dwi: np.ndarray, gtab: GradientTable, mask: np.ndarray | None, shells: Shells) -> np.ndarray:
    if dwi.ndim != 4:
        raise ValueError(f"dwi must have shape (X, Y, Z, N), got {dwi.shape}")
    n = dwi.shape[3]
    if gtab.bvals.shape[0] != n or shells.index.shape[0] != n:
        raise ValueError(
            f"volume counts disagree: dwi {n}, gradient table {gtab.bvals.shape[0]}, shells {shells.index.shape[0]}"
        )
    if not np.array_equal(shells.index < 0, gtab.b0s_mask):
        raise ValueError("shells and gradient table disagree on which volumes are b=0")
    if mask is None:
        mask = np.ones(dwi.shape[:3], dtype=bool)
    elif np.shape(mask) != dwi.shape[:3]:
        raise ValueError(f"mask must have shape {dwi.shape[:3]}, got {np.shape(mask)}")
    mask = np.asarray(mask, dtype=bool)
    if not np.any(dwi[mask]):
        raise ValueError("the DWI volume is all zeros inside the mask: there is no signal to estimate responses from")
    return mask


def estimate_responses(
    dwi: np.ndarray,
    gtab: GradientTable,
    mask: np.ndarray | None,
    shells: Shells,
    *,
    fa_thr: float = FA_THR,
    roi_radii: int = ROI_RADII,
    gm_fa_thr: float = GM_FA_THR,
    gm_md_min: float = GM_MD_MIN,
    gm_md_thr: float = GM_MD_THR,
    csf_fa_thr: float = CSF_FA_THR,
    csf_md_thr: float = CSF_MD_THR,
) -> TissueResponses:
    """Estimate tissue responses from FA/MD-selected voxels (dipy).

    One DW shell: WM only, ``mask_for_response_ssst`` (AND ``mask``) then ``response_from_mask_ssst``.
    Several: WM, GM and CSF masks from ``mask_for_response_msmt`` on the b=0 and b <= ``DTI_BMAX``
    volumes (AND ``mask``), then ``response_from_mask_msmt`` on all shells. In both cases, if fewer
    than ``MIN_RESPONSE_VOXELS`` WM voxels pass, the FA threshold drops by ``FA_THR_STEP`` (with a
    warning) down to ``FA_THR_FLOOR``, then the ``MIN_RESPONSE_VOXELS`` voxels of highest FA serve (if their
    FA exceeds ``FA_FALLBACK_MIN``; a warning says so). GM voxels are those with ``0 < FA < gm_fa_thr`` and
    ``gm_md_min <= MD < gm_md_thr``: dipy's default (``MD < 0.0007``) selects low-FA white matter (crossings) on
    real data, and MSMT-CSD with that GM response explains part of the crossing signal as GM and misses crossings
    (MRtrix3's multi-shell test volume). CSF voxels are those with
    ``0 < FA < csf_fa_thr`` and ``MD >= csf_md_thr`` (dipy keeps ``MD < csf_md_thr``, which selects grey matter,
    not CSF). dipy averages λ2 into λ3, so the GM/CSF diffusivity set here is ``(λ1 + 2 λ2) / 3``.

    Parameters
    ----------
    dwi : ndarray, shape ``(X, Y, Z, N)``
        Signal, scanner units.
    gtab : GradientTable
        Acquisition, voxel-axis frame.
    mask : ndarray, shape ``(X, Y, Z)`` bool, or None
        Voxels allowed in the response (None: all).
    shells : Shells
        From :func:`equidmri.dmri.gradients.find_shells` on ``gtab.bvals``.
    fa_thr : float
        Initial WM FA threshold.
    roi_radii : int
        Half-width of dipy's cuboid ROI at the volume centre, voxels.
    gm_fa_thr, gm_md_min, gm_md_thr, csf_fa_thr, csf_md_thr : float
        GM/CSF selection (multi-shell only); MD in mm²/s.

    Returns
    -------
    TissueResponses

    Raises
    ------
    ValueError
        If shapes or volume counts disagree, the volume is all zeros inside the mask, fewer than
        ``MIN_RESPONSE_VOXELS`` voxels have FA above ``FA_FALLBACK_MIN``, or the GM or CSF mask is empty (the
        message names the tissue and its thresholds).

    References
    ----------
    Tournier et al., NeuroImage 2004 (single fibre response); Jeurissen et al., NeuroImage 2014
    (multi-tissue); dipy ``csdeconv`` and ``mcsd``.
    """
    dwi = np.asarray(dwi)
    mask = _check_inputs(dwi, gtab, mask, shells)
    if shells.bvals.size == 1:
        return _estimate_single_shell(dwi, gtab, mask, shells, fa_thr, roi_radii)
    thresholds = {"gm_fa_thr": gm_fa_thr, "gm_md_thr": gm_md_thr, "csf_fa_thr": csf_fa_thr}
    return _estimate_multi_shell(dwi, gtab, mask, shells, fa_thr, roi_radii, thresholds, gm_md_min, csf_md_thr)


def _estimate_single_shell(dwi, gtab, mask, shells, fa_thr, roi_radii) -> TissueResponses:
    def select(thr: float) -> tuple[np.ndarray]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No voxel with a FA", category=UserWarning)
            wm = mask_for_response_ssst(gtab, dwi, roi_radii=roi_radii, fa_thr=thr)
        return (wm.astype(bool) & mask,)

    (wm,) = _select_wm(select, fa_thr, _fa_in_mask(dwi, gtab, mask))
    (evals, s0), _ = response_from_mask_ssst(gtab, dwi, wm)
    return TissueResponses(tissues=("wm",), shells=shells.bvals, evals=np.asarray(evals)[None, None], s0=[s0])


def _estimate_multi_shell(
    dwi, gtab, mask, shells, fa_thr, roi_radii, thresholds, gm_md_min, csf_md_thr
) -> TissueResponses:
    from dipy.reconst.mcsd import mask_for_response_msmt, response_from_mask_msmt  # imports cvxpy: 0.35 s

    bvals = np.where(gtab.b0s_mask, 0.0, gtab.bvals)  # one b=0 cluster for dipy's b-value grouping
    dti = gtab.b0s_mask | (bvals <= DTI_BMAX)
    if np.count_nonzero(dti) < MIN_DTI_VOLUMES:
        dti = np.ones_like(dti)
    gtab_dti = gradient_table(bvals[dti], bvecs=gtab.bvecs[dti], b0_threshold=gtab.b0_threshold)
    data_dti = dwi[..., dti]

    def select(thr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        common = {"roi_radii": roi_radii, "wm_fa_thr": thr, **thresholds}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No voxel with a", category=UserWarning)
            wm, gm, low_fa = mask_for_response_msmt(gtab_dti, data_dti, **common, csf_md_thr=np.inf)
            _, _, low_fa_low_md = mask_for_response_msmt(gtab_dti, data_dti, **common, csf_md_thr=csf_md_thr)
            _, gm_low_md, _ = mask_for_response_msmt(gtab_dti, data_dti, **{**common, "gm_md_thr": gm_md_min})
        csf = low_fa.astype(bool) & ~low_fa_low_md.astype(bool)
        gm = gm.astype(bool) & ~gm_low_md.astype(bool)
        return wm.astype(bool) & mask, gm & mask, csf & mask

    wm, gm, csf = _select_wm(select, fa_thr, _fa_in_mask(data_dti, gtab_dti, mask))
    rules = {
        "gm": f"0 < FA < {thresholds['gm_fa_thr']} and {gm_md_min} <= MD < {thresholds['gm_md_thr']} mm²/s",
        "csf": f"0 < FA < {thresholds['csf_fa_thr']} and MD >= {csf_md_thr} mm²/s",
    }
    for tissue, tissue_mask in (("gm", gm), ("csf", csf)):
        if not np.any(tissue_mask):
            raise ValueError(
                f"no {tissue} voxel for the multi-tissue response: needs {rules[tissue]} inside the mask and "
                f"within {roi_radii} voxels of the volume centre; give a mask that includes "
                f"{'CSF (ventricles)' if tissue == 'csf' else 'grey matter'}, or deconvolve one shell alone"
            )
    gtab_all = gradient_table(bvals, bvecs=gtab.bvecs, b0_threshold=gtab.b0_threshold)
    rows = response_from_mask_msmt(gtab_all, dwi, wm, gm, csf, tol=SHELL_TOL)  # 3 × (S, 4): λ1 λ2 λ3 S0
    if any(r.shape != (shells.bvals.size, 4) for r in rows):
        raise ValueError(
            f"dipy grouped the b-values into {rows[0].shape[0]} DW shells, expected {shells.bvals.size} "
            f"({shells.bvals.tolist()} s/mm²); shells closer than {SHELL_TOL} s/mm² cannot be separated"
        )
    evals = np.stack([r[:, :3] for r in rows])  # (T, S, 3)
    evals[1:] = evals[1:].mean(axis=-1, keepdims=True)
    s0 = np.array([r[:, 3].mean() for r in rows])
    return TissueResponses(tissues=TISSUES, shells=shells.bvals, evals=evals, s0=s0)
