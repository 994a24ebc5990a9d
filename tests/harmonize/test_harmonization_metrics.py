"""Tests of equidmri.harmonize.metrics: errors of known differences, SSIM and the Wilcoxon helper."""

import numpy as np
import pytest

from equidmri.harmonize.metrics import harmonization_errors, wilcoxon_test


def test_identical_scans_have_zero_errors_and_ssim_1(gain_cohort):
    subject = gain_cohort[0]
    errors = harmonization_errors(subject.b.dwi, subject.b.dwi, subject.b.bvals, subject.b.bvecs, subject.mask)
    assert set(errors) == {"all", "b=1000", "b=2000", "b=3000"}
    for values in errors.values():
        assert values["signal_mse"] == values["fa_mse"] == values["md_mse"] == 0.0
        assert values["ssim"] == pytest.approx(1.0)


def test_a_gain_on_one_shell_shows_as_that_shell_s_signal_error(gain_cohort):
    subject = gain_cohort[0]
    bvals, mask = subject.b.bvals, subject.mask
    scaled = subject.b.dwi.copy()
    scaled[..., bvals == 2000] *= 1.1
    errors = harmonization_errors(scaled, subject.b.dwi, bvals, subject.b.bvecs, mask)
    b0 = subject.b.dwi[..., bvals == 0].mean(-1)[mask]
    expected = np.mean((0.1 * subject.b.dwi[mask][:, bvals == 2000] / b0[:, None]) ** 2)
    assert errors["b=2000"]["signal_mse"] == pytest.approx(expected, rel=1e-6)
    assert errors["b=1000"]["signal_mse"] == 0.0 and errors["b=2000"]["md_mse"] > 0
    assert errors["all"]["signal_mse"] == pytest.approx(expected / 3, rel=1e-6)  # one shell of three
    assert errors["b=2000"]["ssim"] < 1.0


def test_wilcoxon_detects_a_consistent_difference_and_reports_none_without_one():
    rng = np.random.default_rng(1)
    a = rng.uniform(1, 2, 12)
    result = wilcoxon_test(a, a + 0.5 + rng.uniform(0, 0.1, 12))
    assert result["n"] == 12 and result["p"] < 0.01 and result["median_difference"] < 0
    assert wilcoxon_test(a, a)["p"] is None
    with pytest.raises(ValueError, match="1-D of the same length"):
        wilcoxon_test(a, a[:5])


def test_errors_refuse_mismatched_shapes(gain_cohort):
    subject = gain_cohort[0]
    with pytest.raises(ValueError, match="need shape"):
        harmonization_errors(subject.b.dwi[..., :5], subject.b.dwi, subject.b.bvals, subject.b.bvecs, subject.mask)


def test_the_noise_free_reference_leaves_out_the_reference_noise(gain_cohort):
    subject = gain_cohort[0]
    b = subject.b
    errors = harmonization_errors(b.dwi, b.dwi, b.bvals, b.bvecs, subject.mask, b.dwi)
    assert errors["b=1000"]["signal_mse_noise_free"] == errors["b=1000"]["signal_mse"] == 0.0
    noisy = harmonization_errors(b.dwi, b.dwi, b.bvals, b.bvecs, subject.mask, subject.b_noise_free)
    assert noisy["all"]["signal_mse_noise_free"] > 0.0 and noisy["all"]["signal_mse"] == 0.0
