"""Peak-based scores against ground truth (Daducci et al. 2014, as the SHD paper uses them), vectorised.

In every voxel, predicted peaks whose amplitude is below a relative threshold of the voxel's largest
peak are dropped; the rest are matched to ground-truth fibres greedily (smallest angle first, each used
once) within a 25° cone, ignoring the sign of directions. Counted over all voxels:

- TP: matched pairs; FP: predicted peaks left unmatched; FN: ground-truth fibres left unmatched;
- precision = TP / (TP + FP), recall = TP / (TP + FN), F1 their harmonic mean;
- FPR = FP / (TP + FP), the fraction of predicted peaks that are false; FNR = FN / (TP + FN), the
  fraction of true fibres missed;
- angle: mean angular error of the matched pairs, degrees;
- PR-AUC: trapezoidal area under precision against recall over the 19 thresholds 0.05, 0.10, ..., 0.95,
  the curve extended to recall 0 at the precision of its lowest-recall point (a perfect prediction gives 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.integrate import trapezoid

from equidmri.eval.protocol import CONE_DEG, THRESHOLD_VALUES

THRESHOLDS = np.array(THRESHOLD_VALUES)  # relative peak amplitudes (SHD paper, DiSCo)
SCORES = ("precision", "recall", "f1", "angle_deg", "fpr", "fnr")

__all__ = ["CONE_DEG", "SCORES", "THRESHOLDS", "match_peaks", "score_thresholds", "at_threshold"]


def _check(name: str, dirs: np.ndarray) -> None:
    if not isinstance(dirs, np.ndarray) or dirs.ndim != 3 or dirs.shape[-1] != 3:
        raise ValueError(f"{name} must be an (M, P, 3) array, got {getattr(dirs, 'shape', type(dirs).__name__)}")
    if not np.all(np.isfinite(dirs)):
        raise ValueError(f"{name} must be finite (zeros mark missing peaks)")


def match_peaks(
    gt_dirs: np.ndarray, pred_dirs: np.ndarray, keep: np.ndarray | None = None, *, cone_deg: float = CONE_DEG
) -> dict[str, Any]:
    """Greedy antipodal matching of predicted peaks to ground-truth fibres within a cone, per voxel.

    Parameters
    ----------
    gt_dirs : ndarray, shape ``(M, G, 3)``
        Ground-truth fibre directions of M voxels, zeros where there is none (need not be unit).
    pred_dirs : ndarray, shape ``(M, P, 3)``
        Predicted peak directions in the same frame, zeros where there is none.
    keep : ndarray, shape ``(M, P)`` bool, optional
        Predicted peaks that take part (default: all non-zero ones).
    cone_deg : float
        Largest angle of a match, degrees in (0, 90].

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn`` (int arrays ``(M,)``) and ``angle_sum_deg`` (float ``(M,)``: sum of the
        matched angles in each voxel).

    Raises
    ------
    ValueError
        If shapes are wrong, values are not finite or ``cone_deg`` is outside (0, 90].

    References
    ----------
    Daducci et al., "Quantitative comparison of reconstruction methods for intra-voxel fiber recovery from
    diffusion MRI", IEEE TMI 33(2), 2014, §III-C (angular error, n+ and n- within the cone).
    """
    _check("gt_dirs", gt_dirs)
    _check("pred_dirs", pred_dirs)
    if gt_dirs.shape[0] != pred_dirs.shape[0]:
        raise ValueError(f"gt_dirs and pred_dirs must have the same voxels, got {gt_dirs.shape} and {pred_dirs.shape}")
    if not 0.0 < cone_deg <= 90.0:
        raise ValueError(f"cone_deg must be in (0, 90], got {cone_deg}")
    gt_norm, pred_norm = np.linalg.norm(gt_dirs, axis=-1), np.linalg.norm(pred_dirs, axis=-1)
    gt_valid = gt_norm > 0
    pred_valid = pred_norm > 0 if keep is None else (pred_norm > 0) & keep
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.abs(np.einsum("mgc,mpc->mgp", gt_dirs, pred_dirs)) / (gt_norm[:, :, None] * pred_norm[:, None, :])
    angles = np.degrees(np.arccos(np.clip(np.nan_to_num(cos), 0.0, 1.0)))
    angles[~(gt_valid[:, :, None] & pred_valid[:, None, :]) | (angles > cone_deg)] = np.inf
    m, g, p = angles.shape
    tp = np.zeros(m, dtype=np.int64)
    angle_sum = np.zeros(m)
    rows = np.arange(m)
    for _ in range(min(g, p)):
        flat = angles.reshape(m, -1).argmin(axis=1)
        best = angles.reshape(m, -1)[rows, flat]
        hit = np.isfinite(best)
        tp += hit
        angle_sum[hit] += best[hit]
        gi, pi = np.divmod(flat, p)
        angles[rows[hit], gi[hit], :] = np.inf
        angles[rows[hit], :, pi[hit]] = np.inf
    return {"tp": tp, "fp": pred_valid.sum(1) - tp, "fn": gt_valid.sum(1) - tp, "angle_sum_deg": angle_sum}


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def score_thresholds(
    gt_dirs: np.ndarray,
    pred_dirs: np.ndarray,
    pred_values: np.ndarray,
    *,
    thresholds: np.ndarray = THRESHOLDS,
    cone_deg: float = CONE_DEG,
) -> dict[str, Any]:
    """Scores at each relative threshold, PR-AUC and the F1-best threshold.

    Parameters
    ----------
    gt_dirs : ndarray, shape ``(M, G, 3)``
        Ground-truth fibres of the evaluated voxels, zeros where there is none.
    pred_dirs : ndarray, shape ``(M, P, 3)``
        Predicted peaks, same frame.
    pred_values : ndarray, shape ``(M, P)``
        Peak amplitudes (any positive unit); a peak is kept at threshold τ when its amplitude is at
        least τ times the voxel's largest amplitude.
    thresholds : ndarray, shape ``(T,)``
        Relative thresholds in [0, 1].
    cone_deg : float

    Returns
    -------
    dict
        ``thresholds`` (list), per threshold lists ``tp``, ``fp``, ``fn`` and :data:`SCORES`; ``pr_auc``;
        ``best`` = :func:`at_threshold` of the largest F1; ``n_voxels``, ``n_gt_fibres``.

    Raises
    ------
    ValueError
        As :func:`match_peaks`, or if ``pred_values`` is not ``(M, P)``.
    """
    if pred_values.shape != pred_dirs.shape[:2]:
        raise ValueError(f"pred_values must have shape {pred_dirs.shape[:2]}, got {pred_values.shape}")
    values = np.where(np.linalg.norm(pred_dirs, axis=-1) > 0, pred_values, 0.0)
    largest = values.max(axis=1, initial=0.0)[:, None]
    table: dict[str, list] = {k: [] for k in ("tp", "fp", "fn", *SCORES)}
    for tau in thresholds:
        counts = match_peaks(gt_dirs, pred_dirs, (values >= tau * largest) & (values > 0), cone_deg=cone_deg)
        tp, fp, fn = (int(counts[k].sum()) for k in ("tp", "fp", "fn"))
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        f1 = _ratio(2 * precision * recall, precision + recall) if tp else 0.0
        for key, value in zip(
            ("tp", "fp", "fn", *SCORES),
            (
                tp,
                fp,
                fn,
                precision,
                recall,
                f1,
                _ratio(counts["angle_sum_deg"].sum(), tp),
                _ratio(fp, tp + fp),
                _ratio(fn, tp + fn),
            ),
        ):
            table[key].append(value)
    recall, precision = np.array(table["recall"]), np.array(table["precision"])
    finite = np.isfinite(recall) & np.isfinite(precision)
    order = np.argsort(recall[finite])
    curve_recall, curve_precision = recall[finite][order], precision[finite][order]
    # the curve starts at recall 0 with the precision of its lowest-recall point
    pr_auc = 0.0
    if finite.any():
        pr_auc = float(trapezoid(np.r_[curve_precision[:1], curve_precision], np.r_[0.0, curve_recall]))
    result = {
        "thresholds": [float(t) for t in thresholds],
        **table,
        "pr_auc": pr_auc,
        "n_voxels": int(gt_dirs.shape[0]),
        "n_gt_fibres": int((np.linalg.norm(gt_dirs, axis=-1) > 0).sum()),
    }
    result["best"] = at_threshold(result, float(thresholds[int(np.nanargmax(table["f1"]))]))
    return result


def at_threshold(result: dict[str, Any], threshold: float) -> dict[str, float]:
    """The scores of :func:`score_thresholds` output at ``threshold`` (e.g. chosen on validation) and its PR-AUC.

    Raises
    ------
    ValueError
        If ``threshold`` is not one of the evaluated thresholds.
    """
    thresholds = np.asarray(result["thresholds"])
    where = np.flatnonzero(np.isclose(thresholds, threshold))
    if where.size == 0:
        raise ValueError(f"threshold {threshold} was not evaluated; choose from {thresholds.tolist()}")
    i = int(where[0])
    return {
        "threshold": float(thresholds[i]),
        "pr_auc": result["pr_auc"],
        **{k: result[k][i] for k in ("tp", "fp", "fn", *SCORES)},
    }
