"""Tests of the SH harmonizers (baseline, RISH), their registry and their per-shell SH space."""

from dataclasses import replace

import numpy as np
import pytest

from equidmri.harmonize import HARMONIZERS, find_harmonizer, get_harmonizer, harmonization_errors, split_cohort
from equidmri.harmonize.sh_methods import RISHHarmonizer
from equidmri.harmonize.shells import attenuation, rish_features
from equidmri.sims.scanners import SCANNER_B, ScannerParams, phantom_pair, real_pair
from equidmri.sphere.sh import n_coeffs, sh_fit_matrix, sh_matrix

IDEAL = ScannerParams(directions=60, snr=None)
TRUNCATION_ATOL = 0.01  # largest attenuation difference after SH resampling at lmax 8 (measured 0.0036 at b=3000)


def attenuation_gap(harmonized, subject):
    mask = subject.mask
    return np.abs(
        attenuation(harmonized.dwi, harmonized.bvals)[mask] - attenuation(subject.b.dwi, subject.b.bvals)[mask]
    )


def test_identical_noise_free_scanners_give_b_after_the_baseline_resampling():
    train, test = [phantom_pair(0, 12, IDEAL, IDEAL)], phantom_pair(1, 12, IDEAL, IDEAL)
    gaps = {}
    for lmax in (4, 8):
        harmonized = get_harmonizer("baseline", lmax=lmax).fit(train).apply(test.a.dwi, test.a.gtab())
        np.testing.assert_array_equal(harmonized.bvals, test.b.bvals)
        gaps[lmax] = attenuation_gap(harmonized, test).max()
    assert gaps[8] < TRUNCATION_ATOL
    assert gaps[8] < 0.5 * gaps[4]  # what is left is SH truncation: it shrinks with the degree


def test_rish_lowers_the_signal_error_of_held_out_subjects_under_per_shell_gains(gain_cohort):
    splits = split_cohort(gain_cohort)
    errors = {}
    for name in ("baseline", "RISH", "RISH-global"):
        harmonizer = get_harmonizer(name).fit(splits["train"])
        errors[name] = [np.mean(attenuation_gap(harmonizer.apply(s.a.dwi, s.a.gtab()), s) ** 2) for s in splits["test"]]
    for name in ("RISH", "RISH-global"):  # what is left is mostly the noise of both scans
        assert max(errors[name]) < 0.75 * min(errors["baseline"]), errors


def test_rish_learns_the_squared_gain_as_its_degree_0_scale():
    gains = (1.1, 1.2, 1.3)
    train = [phantom_pair(i, 10, IDEAL, replace(IDEAL, direction_seed=4, shell_gain=gains)) for i in range(2)]
    harmonizer = RISHHarmonizer(scale_maps=False).fit(train)
    scale_0 = [harmonizer.global_scale[b][0] for b in (1000.0, 2000.0, 3000.0)]
    np.testing.assert_allclose(scale_0, np.square(gains), rtol=1e-3)  # noise-free: only SH truncation differs


def test_rish_uses_global_scales_on_another_grid(gain_cohort):
    harmonizer = get_harmonizer("RISH").fit(gain_cohort[:6])
    other = phantom_pair(50, 10, replace(IDEAL, directions=20, direction_seed=1, snr=None), IDEAL)
    harmonized = harmonizer.apply(other.a.dwi, other.a.gtab())
    assert harmonized.dwi.shape == (10, 10, 10, 1 + 3 * 30) and np.all(np.isfinite(harmonized.dwi))


def test_rish_features_sum_the_squares_of_each_degree_and_ignore_rotations():
    rng = np.random.default_rng(0)
    coeffs = rng.normal(size=(5, n_coeffs(4)))
    features = rish_features(coeffs, 4)
    np.testing.assert_allclose(features[:, 0], coeffs[:, 0] ** 2)
    np.testing.assert_allclose(features[:, 1], (coeffs[:, 1:6] ** 2).sum(-1))
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    directions = rng.normal(size=(200, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    rotated_samples = coeffs @ sh_matrix(directions @ rotation, 4, "descoteaux07").T  # f(R^T u) at u
    rotated = rotated_samples @ sh_fit_matrix(directions, 4, "descoteaux07").T
    np.testing.assert_allclose(rish_features(rotated, 4), features, rtol=1e-8)
    with pytest.raises(ValueError, match="expected 15 SH coefficients for lmax=4"):
        rish_features(coeffs[:, :10], 4)


def test_apply_before_fit_and_an_unknown_shell_are_refused(gain_cohort):
    subject = gain_cohort[0]
    with pytest.raises(RuntimeError, match="must be fitted before apply"):
        get_harmonizer("baseline").apply(subject.a.dwi, subject.a.gtab())
    harmonizer = get_harmonizer("baseline").fit([replace(subject, a=subject.a, b=subject.b)])
    other = phantom_pair(1, 8, ScannerParams(shells=(1500.0,), shell_gain=(1.0,), b_scale=(1.0,), snr=None), IDEAL)
    with pytest.raises(ValueError, match=r"shell b=1500 s/mm² is not in the reference protocol \(shells 1000, 2000"):
        harmonizer.apply(other.a.dwi, other.a.gtab())


def test_registry_finds_names_in_any_case_and_names_the_choices_otherwise():
    assert find_harmonizer("rish").name == "RISH" and find_harmonizer("BASELINE").name == "baseline"
    assert {h.name for h in HARMONIZERS} >= {"baseline", "RISH", "RISH-global"}
    assert get_harmonizer("RISH-global").scale_maps is False and get_harmonizer("RISH", lmax=4).lmax == 4
    with pytest.raises(ValueError, match=r"unknown harmonizer 'combat'; choose from \['baseline', 'RISH'"):
        find_harmonizer("combat")
    with pytest.raises(TypeError, match="unexpected keyword"):
        get_harmonizer("baseline", epochs=3)


def test_scanner_b_blur_dominates_what_separates_the_real_subject_from_its_b_scan():
    """docs/harmonization.md: on small_64D the baseline's error against noise-free B is mostly B's blur."""
    baseline = get_harmonizer("baseline").fit([phantom_pair(0, 8)])  # scanner B's protocol
    errors = {}
    for blur in (SCANNER_B.blur_sigma, 0.0):
        real = real_pair(replace(SCANNER_B, blur_sigma=blur))
        harmonized = baseline.apply(real.a.dwi, real.a.gtab())
        b = real.b
        values = harmonization_errors(harmonized.dwi, b.dwi, b.bvals, b.bvecs, real.mask, real.b_noise_free)
        errors[blur] = values["all"]["signal_mse_noise_free"]
    assert errors[0.0] < 0.1 * errors[SCANNER_B.blur_sigma]


def test_a_saved_harmonizer_applies_as_the_fitted_one(gain_cohort, tmp_path):
    from equidmri.harmonize.model_file import load_harmonizer, save_harmonizer

    subject = gain_cohort[-1]
    for name in ("baseline", "RISH"):
        fitted = get_harmonizer(name, lmax=6).fit(gain_cohort[:4])
        save_harmonizer(tmp_path / f"{name}.pt", name, fitted)
        loaded_name, loaded = load_harmonizer(tmp_path / f"{name}.pt")
        assert loaded_name == name and loaded.lmax == 6
        expected, got = (h.apply(subject.a.dwi, subject.a.gtab()).dwi for h in (fitted, loaded))
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(RuntimeError, match="must be fitted before it is saved"):
        save_harmonizer(tmp_path / "x.pt", "RISH", get_harmonizer("RISH"))


def test_sites_need_no_pairing_and_may_mix_grids():
    gains = (1.1, 1.2, 1.3)
    scanner_b = replace(IDEAL, direction_seed=4, shell_gain=gains)
    subjects = [
        phantom_pair(0, 10, IDEAL, scanner_b),
        phantom_pair(1, 10, IDEAL, scanner_b),
        phantom_pair(2, 8, IDEAL, scanner_b),
    ]
    site_a, site_b = [s.a for s in subjects], [s.b for s in subjects[::-1]]  # another order, another grid
    harmonizer = RISHHarmonizer().fit_sites(site_a, site_b)
    scale_0 = [harmonizer.global_scale[b][0] for b in (1000.0, 2000.0, 3000.0)]
    np.testing.assert_allclose(scale_0, np.square(gains), rtol=1e-3)
    assert np.isnan(harmonizer.voxel_scale[1000.0]).all()  # two scans on the training grid: fewer than 3, no map
    with pytest.raises(ValueError, match="fit needs scans of both sites"):
        harmonizer.fit_sites(site_a, [])
