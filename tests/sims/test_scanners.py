"""Tests of equidmri.sims.scanners: each scanner effect does what its documentation states."""

from dataclasses import replace

import numpy as np
import pytest

from equidmri.sims.scanners import SCANNER_A, SCANNER_B, ScannerParams, phantom_pair, real_pair, scanner_protocol
from equidmri.sims.synthesis import GM_DIFFUSIVITY

SIZE = 10  # voxels per edge: the smallest phantom with pure-GM voxels and room for the coil profile
IDEAL = ScannerParams(directions=20, snr=None)  # noise-free, no effect


def shell(subject_site, bval):
    return np.flatnonzero(np.isclose(subject_site.bvals, bval))


def test_scanners_a_and_b_have_different_direction_sets_and_counts():
    a, b = scanner_protocol(SCANNER_A), scanner_protocol(SCANNER_B)
    assert a.bvals.size == 1 + 3 * 30 and b.bvals.size == 1 + 3 * 60
    dw_a, dw_b = a.bvecs[a.bvals == 1000], b.bvecs[b.bvals == 1000]
    closest = np.abs(dw_a @ dw_b.T).max(axis=1)
    assert np.median(closest) < 0.999  # not the same directions


def test_shell_gain_multiplies_that_shell_only():
    pair = phantom_pair(3, SIZE, IDEAL, replace(IDEAL, shell_gain=(1.0, 1.2, 1.0)))
    mask = pair.mask
    ratio = pair.b_noise_free[mask] / pair.a.dwi[mask]
    np.testing.assert_allclose(ratio[:, shell(pair.b, 2000)], 1.2, rtol=1e-5)
    np.testing.assert_allclose(ratio[:, shell(pair.b, 1000)], 1.0, rtol=1e-5)
    np.testing.assert_allclose(pair.b.dwi, pair.b_noise_free)  # snr None: acquired = noise-free


def test_b_miscalibration_changes_grey_matter_attenuation_as_exp_minus_bd():
    pair = phantom_pair(4, SIZE, IDEAL, replace(IDEAL, b_scale=(1.05, 1.0, 1.0)))
    gm = pair.tissue_fractions[..., 1] > 0.999
    assert gm.sum() > 10
    volumes = shell(pair.b, 1000)
    ratio = pair.b.dwi[gm][:, volumes] / pair.a.dwi[gm][:, volumes]
    np.testing.assert_allclose(ratio, np.exp(-0.05 * 1000.0 * GM_DIFFUSIVITY), rtol=1e-5)
    np.testing.assert_allclose(pair.b.bvals, pair.a.bvals)  # the scanner reports the nominal b-values


def test_coil_profile_and_bias_field_are_smooth_spatial_factors():
    coil, bias = 0.4, 0.2
    pair = phantom_pair(5, SIZE, IDEAL, replace(IDEAL, coil_gain=coil, bias_amplitude=bias, bias_axis=2))
    mask = pair.mask
    ratio = pair.b.dwi[mask] / pair.a.dwi[mask]
    np.testing.assert_allclose(ratio.std(axis=-1), 0.0, atol=1e-5)  # the same factor on every volume
    axis = (np.arange(SIZE) - (SIZE - 1) / 2) / ((SIZE - 1) / 2)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    expected = (1 + coil * (x**2 + y**2 + z**2)) * (1 + bias * z)
    np.testing.assert_allclose(ratio[:, 0], expected[mask], rtol=1e-5)


def test_blur_smooths_each_volume_and_keeps_its_level():
    pair = phantom_pair(6, SIZE, IDEAL, replace(IDEAL, blur_sigma=1.0))
    np.testing.assert_allclose(pair.b.dwi.mean(axis=(0, 1, 2)), pair.a.dwi.mean(axis=(0, 1, 2)), rtol=0.05)
    roughness = [sum((np.diff(site.dwi, axis=k) ** 2).sum() for k in range(3)) for site in (pair.a, pair.b)]
    assert roughness[1] < 0.5 * roughness[0]
    assert np.all(pair.b.dwi.max(axis=(0, 1, 2)) < pair.a.dwi.max(axis=(0, 1, 2)))


def test_noise_has_the_stated_sigma():
    pair = phantom_pair(7, SIZE, IDEAL, replace(IDEAL, snr=20.0))
    b0 = pair.b.bvals == 0
    bright = pair.mask & (pair.b_noise_free[..., b0].min(axis=-1) > 90)  # high SNR: Rician ~ Gaussian
    noise = pair.b.dwi[bright] - pair.b_noise_free[bright]
    assert noise.std() == pytest.approx(100.0 / 20.0, rel=0.1)


def test_real_subject_b_miscalibration_is_a_power_of_the_attenuation():
    ideal = ScannerParams(shells=(1000.0, 2000.0), shell_gain=(1.0, 1.0), b_scale=(1.0, 1.0), snr=None)
    calibrated, scaled = real_pair(ideal), real_pair(replace(ideal, b_scale=(1.1, 1.0)))
    assert calibrated.a.dwi.shape == (10, 10, 10, 65) and set(np.unique(calibrated.b.bvals)) == {0.0, 1000.0}
    b0 = calibrated.b.bvals == 0
    e1 = calibrated.b.dwi[..., ~b0] / calibrated.b.dwi[..., b0]
    e2 = scaled.b.dwi[..., ~b0] / scaled.b.dwi[..., b0]
    inside = calibrated.mask & (calibrated.b.dwi[..., b0][..., 0] > 0) & np.all(e1 > 1e-3, axis=-1)
    np.testing.assert_allclose(e2[inside], e1[inside] ** 1.1, rtol=1e-4)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"shell_gain": (1.0, 1.0)}, "shell_gain needs one positive value per shell"),
        ({"b_scale": (1.0, 0.0, 1.0)}, "b_scale needs one positive value per shell"),
        ({"snr": 0.0}, "snr must be > 0"),
        ({"blur_sigma": -1.0}, "blur_sigma and coil_gain must be >= 0"),
        ({"bias_axis": 3}, "bias_axis must be 0, 1 or 2"),
    ],
)
def test_scanner_params_refuse_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        replace(IDEAL, **changes)
