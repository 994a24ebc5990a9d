"""Tests of the Daducci scores: perfect predictions, hand-counted false positives and negatives."""

import numpy as np
import pytest

from equidmri.eval.metrics import THRESHOLDS, at_threshold, match_peaks, score_thresholds

X, Y, Z = np.eye(3)


def _rotated(axis_from, axis_to, degrees):
    t = np.radians(degrees)
    return np.cos(t) * axis_from + np.sin(t) * axis_to


def test_ground_truth_against_itself_is_perfect():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(50, 3, 3))
    gt[rng.random((50, 3)) < 0.4] = 0.0
    gt[:, 0] = rng.normal(size=(50, 3))  # every voxel has a fibre
    result = score_thresholds(gt, -gt, np.linalg.norm(gt, axis=-1) > 0)  # antipodes are the same axes
    best = result["best"]
    assert best["angle_deg"] == pytest.approx(0.0, abs=1e-5) and best["f1"] == 1.0
    assert best["fp"] == 0 and best["fn"] == 0 and result["pr_auc"] == pytest.approx(1.0)
    assert len(result["f1"]) == THRESHOLDS.size == 19


def test_hand_made_counts():
    gt = np.zeros((3, 2, 3))
    pred = np.zeros((3, 3, 3))
    gt[0] = X, Y  # voxel 0: both found, one at 10 deg, plus a spurious peak
    pred[0] = _rotated(X, Y, 10), Y, Z
    gt[1, 0] = X  # voxel 1: the only peak is 30 deg off: 1 FN and 1 FP
    pred[1, 0] = _rotated(X, Z, 30)
    gt[2] = X, Y  # voxel 2: one fibre missed
    pred[2, 0] = -Y
    counts = match_peaks(gt, pred)
    assert counts["tp"].tolist() == [2, 0, 1]
    assert counts["fp"].tolist() == [1, 1, 0]
    assert counts["fn"].tolist() == [0, 1, 1]
    np.testing.assert_allclose(counts["angle_sum_deg"], [10.0, 0.0, 0.0], atol=1e-9)
    result = score_thresholds(gt, pred, np.ones((3, 3)))
    best = at_threshold(result, 0.5)
    assert (best["tp"], best["fp"], best["fn"]) == (3, 2, 2)
    assert best["precision"] == pytest.approx(3 / 5) and best["fnr"] == pytest.approx(2 / 5)
    assert best["angle_deg"] == pytest.approx(10.0 / 3)


def test_relative_threshold_drops_small_peaks_and_greedy_matching_uses_each_peak_once():
    gt = np.zeros((1, 2, 3))
    gt[0] = X, _rotated(X, Y, 20)  # two fibres 20 deg apart, one predicted peak between them
    pred = np.zeros((1, 2, 3))
    pred[0] = _rotated(X, Y, 12), Z
    result = score_thresholds(gt, pred, np.array([[1.0, 0.3]]))
    low, high = at_threshold(result, 0.05), at_threshold(result, 0.5)
    assert (low["tp"], low["fp"], low["fn"]) == (1, 1, 1)  # Z kept at 0.05: false positive
    assert (high["tp"], high["fp"], high["fn"]) == (1, 0, 1)  # dropped at 0.5 (0.3 < 0.5)
    assert high["angle_deg"] == pytest.approx(8.0)  # matched to the closer fibre


def test_unknown_threshold_and_bad_shapes_raise():
    result = score_thresholds(np.zeros((1, 1, 3)) + X, np.zeros((1, 1, 3)) + X, np.ones((1, 1)))
    with pytest.raises(ValueError, match="not evaluated"):
        at_threshold(result, 0.33)
    with pytest.raises(ValueError, match="pred_values"):
        score_thresholds(np.zeros((1, 1, 3)), np.zeros((1, 2, 3)), np.ones((1, 3)))
