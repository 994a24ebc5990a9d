"""Tests for equidmri.eval.agreement on hand-made peak fields with known angles."""

from __future__ import annotations

import numpy as np
import pytest

from equidmri.eval.agreement import main_peak_agreement, second_peak_recall


def axis(angle_deg: float) -> np.ndarray:
    """Unit vector in the xy plane at ``angle_deg`` from +x."""
    angle = np.radians(angle_deg)
    return np.array([np.cos(angle), np.sin(angle), 0.0])


def field(first_peaks: list[np.ndarray], n_peaks: int = 2) -> np.ndarray:
    """Peak field (len, 1, 1, P, 3) whose first peaks are ``first_peaks``; later peaks are +z noise."""
    dirs = np.zeros((len(first_peaks), 1, 1, n_peaks, 3))
    dirs[:, 0, 0, 0] = first_peaks
    dirs[:, 0, 0, 1:] = [0.0, 0.0, 1.0]  # never compared: only index 0 along P counts
    return dirs


def test_identical_fields_agree_exactly():
    dirs = field([axis(0.0), axis(33.0), np.array([0.0, 0.6, 0.8])])
    result = main_peak_agreement(dirs, dirs)
    assert result == {"n_voxels": 3, "fraction_within_cone": 1.0, "mean_angle_deg": 0.0, "median_angle_deg": 0.0}


def test_known_angles_give_known_statistics():
    reference = field([axis(0.0)] * 4)
    # angles 0, 30, 90 and the antipode of 10 deg (190 deg -> 10 deg)
    other = field([axis(0.0), axis(30.0), axis(90.0), axis(190.0)], n_peaks=3)
    result = main_peak_agreement(reference, other)
    assert result["n_voxels"] == 4
    assert result["fraction_within_cone"] == 0.5  # 0 and 10 deg are inside the 25 deg cone
    assert result["mean_angle_deg"] == pytest.approx((0 + 30 + 90 + 10) / 4, abs=1e-12)
    assert result["median_angle_deg"] == pytest.approx((10 + 30) / 2, abs=1e-12)


def test_antipodal_directions_agree():
    result = main_peak_agreement(field([axis(40.0)]), field([-axis(40.0)]))
    assert result["median_angle_deg"] == pytest.approx(0.0, abs=1e-6)
    assert result["fraction_within_cone"] == 1.0


def test_amplitude_scaled_peaks_give_same_angles():
    reference = field([axis(0.0), axis(0.0)])
    other = field([3.7 * axis(30.0), 0.2 * axis(-60.0)])
    result = main_peak_agreement(reference, other)
    assert result["mean_angle_deg"] == pytest.approx(45.0, abs=1e-12)


def test_cone_boundary_is_inclusive():
    result = main_peak_agreement(field([axis(0.0)]), field([axis(30.0)]), cone_deg=30.0 + 1e-9)
    assert result["fraction_within_cone"] == 1.0
    result = main_peak_agreement(field([axis(0.0)]), field([axis(30.0)]), cone_deg=29.999)
    assert result["fraction_within_cone"] == 0.0


def test_voxels_without_first_peak_or_outside_mask_are_skipped():
    reference = field([axis(0.0), axis(0.0), np.zeros(3), axis(0.0)])
    other = field([axis(30.0), np.zeros(3), axis(0.0), axis(90.0)])
    mask = np.array([True, True, True, False]).reshape(4, 1, 1)
    result = main_peak_agreement(reference, other, mask)
    assert result["n_voxels"] == 1
    assert result["fraction_within_cone"] == 0.0
    assert result["mean_angle_deg"] == pytest.approx(30.0, abs=1e-12)
    assert result["median_angle_deg"] == pytest.approx(30.0, abs=1e-12)


def test_no_comparable_voxel_warns_and_returns_nan():
    empty = field([np.zeros(3)])
    with pytest.warns(UserWarning, match="no voxel has a first peak in both fields"):
        result = main_peak_agreement(empty, field([axis(0.0)]))
    assert result["n_voxels"] == 0
    assert np.isnan(result["fraction_within_cone"]) and np.isnan(result["mean_angle_deg"])
    assert np.isnan(result["median_angle_deg"])


ONE = field([axis(0.0)])  # a valid one-voxel field


@pytest.mark.parametrize(
    ("dirs_a", "dirs_b", "kwargs", "error", "match"),
    [
        ([[0.0]], ONE, {}, TypeError, "dirs_a must be a numpy.ndarray, got list"),
        (ONE, np.zeros((1, 1, 1, 3)), {}, ValueError, r"dirs_b must have shape \(X, Y, Z, P, 3\)"),
        (ONE, np.zeros((1, 1, 1, 0, 3)), {}, ValueError, r"P >= 1, got \(1, 1, 1, 0, 3\)"),
        (ONE, np.zeros((1, 1, 1, 2, 2)), {}, ValueError, r"dirs_b must have shape .* got \(1, 1, 1, 2, 2\)"),
        (field([np.full(3, np.nan)]), ONE, {}, ValueError, "dirs_a must be finite"),
        (field([axis(0.0)] * 2), ONE, {}, ValueError, r"share spatial shape, got \(2, 1, 1\) and \(1, 1, 1\)"),
        (ONE, ONE, {"mask": np.ones((1, 1))}, ValueError, r"mask must have the spatial shape \(1, 1, 1\)"),
        (ONE, ONE, {"mask": [[[True]]]}, TypeError, "mask must be a numpy.ndarray or None, got list"),
        (ONE, ONE, {"cone_deg": -1.0}, ValueError, r"cone_deg must be in \[0, 90\] degrees, got -1.0"),
        (ONE, ONE, {"cone_deg": 95.0}, ValueError, "got 95.0"),
    ],
)
def test_invalid_input_raises(dirs_a, dirs_b, kwargs, error, match):
    with pytest.raises(error, match=match):
        main_peak_agreement(dirs_a, dirs_b, **kwargs)


def _two_peak_field():
    """Four voxels: a clear crossing (x, y), a weak one (y at 0.3), a crossing at (x, z), no peak."""
    dirs = np.zeros((4, 1, 1, 2, 3))
    values = np.zeros((4, 1, 1, 2))
    dirs[0, 0, 0] = [[1, 0, 0], [0, 1, 0]]
    values[0, 0, 0] = [1.0, 0.8]
    dirs[1, 0, 0] = [[1, 0, 0], [0, 1, 0]]
    values[1, 0, 0] = [1.0, 0.3]
    dirs[2, 0, 0] = [[1, 0, 0], [0, 0, 1]]
    values[2, 0, 0] = [1.0, 0.5]
    return dirs, values


def test_second_peak_recall_counts_clear_crossings_found_within_the_cone():
    ref_dirs, ref_values = _two_peak_field()
    mask = np.ones((4, 1, 1), bool)
    tilted = np.array([0.0, np.cos(np.radians(20)), np.sin(np.radians(20))])  # 20 deg from y, 70 deg from z
    found = np.zeros((4, 1, 1, 3, 3))
    found[0, 0, 0, 2] = -tilted  # the sign and the peak's rank do not matter
    found[2, 0, 0, 0] = [1, 0, 0]  # only the first peak: the crossing at z is missed
    result = second_peak_recall(ref_dirs, ref_values, found, mask)
    assert result == {"n_crossings": 2, "fraction_found": 0.5}
    assert second_peak_recall(ref_dirs, ref_values, found, mask, cone_deg=15.0)["fraction_found"] == 0.0
    assert second_peak_recall(ref_dirs, ref_values, found, mask, min_ratio=0.2)["n_crossings"] == 3


def test_second_peak_recall_without_crossings_is_nan_and_checks_inputs():
    ref_dirs, ref_values = _two_peak_field()
    none = second_peak_recall(ref_dirs, ref_values, ref_dirs, np.zeros((4, 1, 1), bool))
    assert none["n_crossings"] == 0 and np.isnan(none["fraction_found"])
    with pytest.raises(ValueError, match=r"min_ratio must be in \(0, 1\], got 0.0"):
        second_peak_recall(ref_dirs, ref_values, ref_dirs, np.ones((4, 1, 1), bool), min_ratio=0.0)
    with pytest.raises(ValueError, match="ref_values must be"):
        second_peak_recall(ref_dirs[..., :1, :], ref_values[..., :1], ref_dirs, np.ones((4, 1, 1), bool))
