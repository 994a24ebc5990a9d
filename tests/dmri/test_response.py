"""Tests of equidmri.dmri.response: zonal response coefficients and dipy-based estimation."""

import json
import math

import numpy as np
import pytest
from dipy.data import get_3shell_gtab, get_fnames
from dipy.reconst.csdeconv import auto_response_ssst
from dipy.reconst.dti import fractional_anisotropy
from dipy.reconst.mcsd import mask_for_response_msmt, multi_shell_fiber_response
from dipy.sims.voxel import multi_tensor
from scipy.special import erf, roots_legendre

from equidmri.dmri.gradients import Shells, find_shells, make_gtab
from equidmri.dmri.io import load_dwi
from equidmri.dmri.mask import median_otsu_mask
from equidmri.dmri.response import TISSUES, TissueResponses, estimate_responses
from equidmri.sphere.sh import sh_matrix

WM_EVALS = (1.7e-3, 3e-4, 3e-4)  # mm²/s, FA 0.7990 (STYLE.md §6)
GM_EVALS = (9.5e-4, 9e-4, 8.5e-4)  # mm²/s, FA 0.064: near-isotropic (dipy's GM mask needs FA > 0), MD in the GM band
CSF_EVALS = (3.1e-3, 3e-3, 2.9e-3)  # mm²/s, FA 0.027
S0 = {"wm": 100.0, "gm": 80.0, "csf": 150.0}


def _responses():
    return TissueResponses(
        tissues=TISSUES,
        shells=[1000.0, 2000.0, 3500.0],
        evals=[[WM_EVALS] * 3, [[8e-4] * 3] * 3, [[3e-3] * 3] * 3],
        s0=[S0["wm"], S0["gm"], S0["csf"]],
    )


def _phantom(gtab, shape, kinds, seed=0):
    """Noiseless voxels cycling through ``kinds`` = [(evals, s0), ...], each fibre in a random direction."""
    rng = np.random.default_rng(seed)
    label = np.arange(math.prod(shape)).reshape(shape) % len(kinds)
    dwi = np.zeros(shape + (gtab.bvals.size,))
    for voxel in np.ndindex(shape):
        evals, s0 = kinds[label[voxel]]
        angles = [(rng.uniform(0, 180), rng.uniform(0, 360))]
        dwi[voxel], _ = multi_tensor(gtab, np.array([evals]), S0=s0, angles=angles, fractions=[100], snr=None)
    return dwi, label


@pytest.fixture(scope="module")
def three_shell():
    raw = get_3shell_gtab()
    gtab = make_gtab(raw.bvals, raw.bvecs)
    kinds = [(WM_EVALS, S0["wm"]), (GM_EVALS, S0["gm"]), (CSF_EVALS, S0["csf"])]
    dwi, label = _phantom(gtab, (4, 4, 3), kinds)
    return dwi, gtab, label


@pytest.fixture(scope="module")
def single_shell():
    raw = get_3shell_gtab()
    keep = raw.bvals < 1500  # b=0 and the 64 directions at b=1000
    return make_gtab(raw.bvals[keep], raw.bvecs[keep])


@pytest.fixture(scope="module")
def small_64d():
    return load_dwi(*get_fnames(name="small_64D"))


# ------------------------------------------------------------------------------------ zonal
def test_zonal_matches_least_squares_sh_fit():
    """Weighted least squares over all (l, m) on a Gauss-Legendre × uniform-φ grid of 1600 directions.

    The grid integrates products of degree <= 79 exactly, so the fit is the L2 projection: content
    above l = 18 cannot alias into it.
    """
    responses = _responses()
    t, w = roots_legendre(40)
    phi = 2 * math.pi * np.arange(40) / 40
    sin = np.sqrt(1 - t**2)
    directions = np.stack([np.outer(sin, np.cos(phi)), np.outer(sin, np.sin(phi)), np.outer(t, np.ones(40))], -1)
    directions = directions.reshape(-1, 3)
    sqrt_weight = np.sqrt(np.repeat(w, 40) * 2 * math.pi / 40)
    lam_perp = 0.5 * (responses.evals[..., 1] + responses.evals[..., 2])
    lam_par = responses.evals[..., 0]
    exponent = lam_perp[..., None] + (lam_par - lam_perp)[..., None] * directions[:, 2] ** 2
    samples = (responses.s0 / responses.s0[0])[:, None, None] * np.exp(-responses.shells[:, None] * exponent)
    basis = sh_matrix(directions, 18, "descoteaux07")
    fit, *_ = np.linalg.lstsq(basis * sqrt_weight[:, None], (samples.reshape(9, -1) * sqrt_weight).T, rcond=None)
    fit = fit.T.reshape(3, 3, -1)
    zonal_index = [l * (l + 1) // 2 for l in range(0, 19, 2)]  # (l, m=0) in dipy order
    # atol covers the exact zeros of the isotropic tissues (the fit gives ~1e-20) and rounding (< 1e-13 measured)
    np.testing.assert_allclose(responses.zonal(18)[:, 1:], fit[..., zonal_index], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(np.delete(fit, zonal_index, axis=-1), 0.0, atol=1e-14)  # m != 0 vanish (4e-16)


def test_zonal_closed_forms():
    responses = _responses()
    zonal = responses.zonal(8)
    assert zonal.shape == (3, 4, 5)
    ratio = responses.s0 / responses.s0[0]
    np.testing.assert_allclose(zonal[:, 0, 0], math.sqrt(4 * math.pi) * ratio, rtol=1e-15)
    np.testing.assert_array_equal(zonal[:, 0, 1:], 0.0)
    for tissue, md in ((1, 8e-4), (2, 3e-3)):
        np.testing.assert_allclose(
            zonal[tissue, 1:, 0], math.sqrt(4 * math.pi) * ratio[tissue] * np.exp(-responses.shells * md), rtol=1e-13
        )
        np.testing.assert_array_equal(zonal[tissue, 1:, 1:], 0.0)
    a = responses.shells * (WM_EVALS[0] - WM_EVALS[1])  # r_00 = sqrt(pi) e^{-b λ⊥} sqrt(pi/a) erf(sqrt(a))
    expected = math.sqrt(math.pi) * np.exp(-responses.shells * WM_EVALS[1]) * np.sqrt(math.pi / a) * erf(np.sqrt(a))
    np.testing.assert_allclose(zonal[0, 1:, 0], expected, rtol=1e-13)


def test_zonal_agrees_with_dipy_multi_shell_fiber_response():
    responses = _responses()
    rows = [np.column_stack([responses.evals[t], np.full(3, responses.s0[t])]) for t in range(3)]
    dipy_response = multi_shell_fiber_response(8, np.r_[0.0, responses.shells], *rows).response / responses.s0[0]
    zonal = responses.zonal(8)
    np.testing.assert_allclose(dipy_response[:, 1], zonal[1, :, 0], rtol=1e-12)  # dipy columns: CSF, GM, WM...
    np.testing.assert_allclose(dipy_response[:, 0], zonal[2, :, 0], rtol=1e-12)
    # dipy fits WM by least squares at lmax 8, so degrees > 8 alias into it: 2.7e-6 measured
    np.testing.assert_allclose(dipy_response[:, 2:], zonal[0], rtol=0, atol=1e-5)


def test_zonal_rejects_odd_lmax():
    with pytest.raises(ValueError, match="lmax must be even and >= 0, got 7"):
        _responses().zonal(7)


def test_dict_round_trip_through_json():
    responses = _responses()
    restored = TissueResponses.from_dict(json.loads(json.dumps(responses.to_dict())))
    assert restored.tissues == TISSUES
    for name in ("shells", "evals", "s0"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(responses, name))
    np.testing.assert_array_equal(restored.zonal(8), responses.zonal(8))


def test_from_dict_rejects_bad_input():
    with pytest.raises(ValueError, match=r"response dict lacks keys \['s0'\]"):
        TissueResponses.from_dict({"tissues": ["wm"], "shells": [1000.0], "evals": [[[1e-3, 1e-4, 1e-4]]]})
    with pytest.raises(TypeError, match="from_dict needs a mapping, got list"):
        TissueResponses.from_dict([1, 2])


def test_dipy_wm_response_is_first_shell_wm():
    evals, s0 = _responses().dipy_wm_response()
    np.testing.assert_array_equal(evals, WM_EVALS)
    assert s0 == 100.0 and isinstance(s0, float)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tissues": ("gm",)}, r"tissues must be \('wm',\) or \('wm', 'gm', 'csf'\), got \('gm',\)"),
        ({"shells": [1000.0, 2000.0]}, r"evals must be \(T, S, 3\) = \(1, 2, 3\) and s0 \(T,\) = \(1,\)"),
        ({"shells": [1000.0, 1000.0], "evals": [[WM_EVALS] * 2]}, "shells must be strictly ascending"),
        ({"shells": [0.0]}, "shells must be a non-empty"),
        ({"evals": [[(-1e-3, 0.0, 0.0)]]}, "evals must be finite and >= 0"),
        ({"s0": [0.0]}, "s0 must be finite and >= 0 with a positive WM value"),
    ],
)
def test_tissue_responses_validate(kwargs, match):
    base = {"tissues": ("wm",), "shells": [1000.0], "evals": [[WM_EVALS]], "s0": [100.0]}
    with pytest.raises(ValueError, match=match):
        TissueResponses(**{**base, **kwargs})


def test_tissue_responses_are_read_only():
    with pytest.raises(ValueError, match="read-only"):
        _responses().evals[0, 0, 0] = 1.0


# ------------------------------------------------------------------------------- estimation
def test_single_shell_matches_dipy_auto_response_on_small_64d(small_64d):
    gtab = small_64d.gtab()
    responses = estimate_responses(small_64d.dwi, gtab, None, find_shells(small_64d.bvals))
    (dipy_evals, dipy_s0), _ = auto_response_ssst(gtab, small_64d.dwi, roi_radii=10, fa_thr=0.7)
    assert responses.tissues == ("wm",)
    np.testing.assert_allclose(responses.evals[0, 0], dipy_evals, rtol=1e-12)
    assert responses.s0[0] == pytest.approx(dipy_s0, rel=1e-12)
    np.testing.assert_allclose(responses.evals[0, 0], [1.49e-3, 3.0e-4, 3.0e-4], rtol=0.01)  # ECOSYSTEM.md §1
    assert responses.s0[0] == pytest.approx(191.5, abs=0.05)


def test_single_shell_with_brain_mask_on_small_64d(small_64d):
    gtab = small_64d.gtab()
    mask = median_otsu_mask(small_64d.dwi, gtab, small_64d.valid)
    responses = estimate_responses(small_64d.dwi, gtab, mask, find_shells(small_64d.bvals))
    # golden values (95 voxels: FA > 0.7 in the ROI and the 303-voxel brain mask)
    np.testing.assert_allclose(responses.evals[0, 0], [1.5558037e-3, 3.19585e-4, 3.19585e-4], rtol=1e-6)
    assert responses.s0[0] == pytest.approx(202.8, rel=1e-6)
    np.testing.assert_allclose(responses.shells, [994.1926431308], rtol=1e-10)


def test_single_shell_lowers_fa_threshold_when_too_few_voxels(single_shell):
    evals = (1.5e-3, 4.5e-4, 4.5e-4)
    assert 0.6 < fractional_anisotropy(np.array(evals)) < 0.7  # 0.639
    dwi, _ = _phantom(single_shell, (3, 3, 2), [(evals, 100.0)])
    with pytest.warns(UserWarning, match=r"only 0 WM voxel\(s\) with FA > 0.7 \(need 10\).*lowered to 0.6") as record:
        responses = estimate_responses(dwi, single_shell, None, find_shells(single_shell.bvals))
    assert len([w for w in record if "WM voxel" in str(w.message)]) == 1
    np.testing.assert_allclose(responses.evals[0, 0], evals, rtol=1e-6)
    assert responses.s0[0] == pytest.approx(100.0, rel=1e-9)


def test_single_shell_gives_up_without_anisotropic_voxels(single_shell):
    dwi, _ = _phantom(single_shell, (3, 3, 2), [(GM_EVALS, 100.0)])
    with pytest.raises(
        ValueError,
        match=r"fewer than 10 voxels of the mask look like single-fibre white matter "
        r"\(FA > 0.4; found 0\)",
    ):
        estimate_responses(dwi, single_shell, None, find_shells(single_shell.bvals))


def test_single_shell_falls_back_to_the_highest_fa_voxels(single_shell):
    """A small field of view with only a few FA > 0.5 voxels (dipy's small_25 case) still gets a WM response."""
    evals = (1.4e-3, 4.0e-4, 4.0e-4)  # FA 0.62
    mild = (1.2e-3, 6.0e-4, 6.0e-4)  # FA 0.41: above the fallback floor, below every threshold
    assert fractional_anisotropy(np.array(mild)) > 0.4
    dwi, _ = _phantom(single_shell, (4, 3, 1), [(evals, 100.0)] * 4 + [(mild, 100.0)] * 8)
    with pytest.warns(UserWarning, match=r"uses the 10 voxels of highest FA \(0.4\d to 0.6\d\)"):
        responses = estimate_responses(dwi, single_shell, None, find_shells(single_shell.bvals))
    assert responses.evals[0, 0, 0] > responses.evals[0, 0, 1]


def test_all_zero_volume_is_reported_as_empty(single_shell):
    dwi = np.zeros((3, 3, 2, len(single_shell.bvals)))
    with pytest.raises(ValueError, match="the DWI volume is all zeros inside the mask"):
        estimate_responses(dwi, single_shell, None, find_shells(single_shell.bvals))


def test_multi_shell_recovers_phantom_responses(three_shell):
    dwi, gtab, _ = three_shell
    responses = estimate_responses(dwi, gtab, np.ones(dwi.shape[:3], bool), find_shells(gtab.bvals))
    assert responses.tissues == TISSUES
    np.testing.assert_allclose(responses.shells, [1000.0, 2000.0, 3500.0], atol=0.01)
    np.testing.assert_allclose(responses.evals[0], [WM_EVALS] * 3, rtol=1e-6)
    # dipy's response keeps (λ1, λ2, λ2), so the isotropic diffusivity is (λ1 + 2 λ2) / 3
    np.testing.assert_allclose(responses.evals[1], (GM_EVALS[0] + 2 * GM_EVALS[1]) / 3, rtol=1e-6)
    np.testing.assert_allclose(responses.evals[2], (CSF_EVALS[0] + 2 * CSF_EVALS[1]) / 3, rtol=1e-6)
    np.testing.assert_allclose(responses.s0, [S0["wm"], S0["gm"], S0["csf"]], rtol=1e-9)


def test_dipy_default_tissue_masks_miss_grey_matter(three_shell):
    """Why estimate_responses builds its own GM and CSF masks: with dipy 1.12.1's defaults, GM of a realistic MD
    (0.9e-3 mm²/s) fails its GM rule (MD < 0.0007) and passes its CSF rule (MD < 0.002)."""
    dwi, gtab, label = three_shell
    low_b = gtab.bvals < 1500
    with pytest.warns(UserWarning, match="No voxel with a MD lower than 0.0007"):
        _, gm, csf = mask_for_response_msmt(
            make_gtab(gtab.bvals[low_b], gtab.bvecs[low_b]), dwi[..., low_b], roi_radii=10
        )
    assert not gm.any()
    np.testing.assert_array_equal(csf.astype(bool), label == 1)  # dipy's "CSF" voxels are the grey matter ones


@pytest.mark.parametrize(
    ("tissue", "label_value", "match"),
    [
        (
            "gm",
            1,
            r"no gm voxel for the multi-tissue response: needs 0 < FA < 0.2 and 0.0007 <= MD < 0.0011 mm²/s "
            r"inside "
            r"the mask and within 10 voxels of the volume centre; give a mask that includes grey matter",
        ),
        (
            "csf",
            2,
            r"no csf voxel for the multi-tissue response: needs 0 < FA < 0.1 and MD >= 0.002 mm²/s.*"
            r"includes CSF \(ventricles\), or deconvolve one shell alone",
        ),
    ],
)
def test_multi_shell_empty_tissue_mask_is_an_error(three_shell, tissue, label_value, match):
    dwi, gtab, label = three_shell
    with pytest.raises(ValueError, match=match):
        estimate_responses(dwi, gtab, label != label_value, find_shells(gtab.bvals))


def test_multi_shell_without_wm_voxels_is_an_error(three_shell):
    dwi, gtab, label = three_shell
    with pytest.raises(ValueError, match="fewer than 10 voxels of the mask look like single-fibre white matter"):
        estimate_responses(dwi, gtab, label != 0, find_shells(gtab.bvals))


def test_estimate_responses_checks_inputs(three_shell):
    dwi, gtab, _ = three_shell
    shells = find_shells(gtab.bvals)
    with pytest.raises(ValueError, match=r"dwi must have shape \(X, Y, Z, N\), got \(4, 4, 3\)"):
        estimate_responses(dwi[..., 0], gtab, None, shells)
    with pytest.raises(ValueError, match="volume counts disagree: dwi 192, gradient table 193, shells 193"):
        estimate_responses(dwi[..., 1:], gtab, None, shells)
    moved = Shells(bvals=shells.bvals, index=np.r_[0, shells.index[1:]])
    with pytest.raises(ValueError, match="shells and gradient table disagree on which volumes are b=0"):
        estimate_responses(dwi, gtab, None, moved)
    with pytest.raises(ValueError, match=r"mask must have shape \(4, 4, 3\), got \(4, 4\)"):
        estimate_responses(dwi, gtab, np.ones((4, 4), bool), shells)
