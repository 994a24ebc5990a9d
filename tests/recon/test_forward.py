"""Tests of equidmri.recon.forward: the multi-tissue spherical convolution against dipy and closed forms."""

import math

import numpy as np
import pytest
import torch
from dipy.core.geometry import cart2sphere
from dipy.reconst.csdeconv import forward_sdeconv_mat
from dipy.reconst.shm import real_sh_descoteaux, sh_to_rh, sph_harm_ind_list
from scipy.special import erf

from equidmri.dmri.gradients import find_shells
from equidmri.dmri.response import TissueResponses
from equidmri.recon.forward import FODF_LMAX, SignalModel, convolution_factors
from equidmri.sphere import hemisphere, sh

WM_EVALS = (1.7e-3, 3e-4, 3e-4)  # mm²/s, FA 0.7990 (STYLE.md §6)
GM_MD, CSF_MD = 8e-4, 3e-3  # mm²/s
S0 = (100.0, 80.0, 150.0)  # WM, GM, CSF b=0 signal
SHELL_BVALS = (1000.0, 2000.0)  # s/mm²


def _scheme(n_per_shell=25, seed=0):
    """Two shells of random directions with a b=0 volume first and one between the shells."""
    rng = np.random.default_rng(seed)
    bvecs = rng.normal(size=(2 * n_per_shell + 2, 3))
    bvecs /= np.linalg.norm(bvecs, axis=1, keepdims=True)
    bvals = np.r_[0.0, [SHELL_BVALS[0]] * n_per_shell, 0.0, [SHELL_BVALS[1]] * n_per_shell]
    bvecs[bvals == 0] = 0.0
    return bvals, bvecs, find_shells(bvals)


def _responses(wm_evals=WM_EVALS):
    return TissueResponses(
        tissues=("wm", "gm", "csf"),
        shells=SHELL_BVALS,
        evals=[[wm_evals] * 2, [[GM_MD] * 3] * 2, [[CSF_MD] * 3] * 2],
        s0=S0,
    )


def _dipy_signal(bvals, bvecs, shells, zonal_wm, fodf_sh, lmax):
    """dipy's CSD forward model B R f per shell (descoteaux07, legacy=False); b=0 volumes see l = 0 only."""
    m_values, l_values = sph_harm_ind_list(lmax)
    signal = np.empty(bvals.size)
    for row in range(zonal_wm.shape[0]):
        volumes = shells.index == row - 1
        r_sh = np.zeros(l_values.size)
        r_sh[m_values == 0] = zonal_wm[row, : lmax // 2 + 1]
        response_matrix = forward_sdeconv_mat(sh_to_rh(r_sh, m_values, l_values), l_values)
        directions = bvecs[volumes] if row > 0 else np.tile([0.0, 0.0, 1.0], (volumes.sum(), 1))
        _, theta, phi = cart2sphere(*directions.T)
        basis, _, _ = real_sh_descoteaux(lmax, theta, phi, legacy=False)
        signal[volumes] = basis @ response_matrix @ fodf_sh
    return signal


def test_convolution_factors_closed_form():
    zonal = np.random.randn(2, 5)
    factors = convolution_factors(zonal, 8)
    l_of = sh.degrees(8)
    expected = np.sqrt(4 * math.pi / (2 * l_of + 1)) * zonal[:, l_of // 2]
    np.testing.assert_allclose(factors, expected, rtol=1e-15, atol=0)


def test_convolving_a_dirac_gives_the_single_fibre_signal():
    """f = delta_u has f_lm = Y_lm(u); its convolution with the WM response is exp(-b (l_perp + dl (g.u)^2))."""
    bvals, bvecs, shells = _scheme()
    zonal = _responses().zonal(FODF_LMAX)
    u = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    dirac = sh.sh_matrix(u[None], FODF_LMAX, "descoteaux07")[0]
    for s, bval in enumerate(SHELL_BVALS):
        g = bvecs[shells.index == s]
        signal = sh.sh_matrix(g, FODF_LMAX, "descoteaux07") @ (convolution_factors(zonal[0, 1 + s], FODF_LMAX) * dirac)
        expected = np.exp(-bval * (WM_EVALS[1] + (WM_EVALS[0] - WM_EVALS[1]) * (g @ u) ** 2))
        # lmax-18 truncation of the response: measured 6.4e-12 (b=1000), 1.8e-9 (b=2000)
        np.testing.assert_allclose(signal, expected, atol=4e-9, rtol=0)


def test_signal_model_convolution_equals_dipy_forward_sdeconv_mat(float64):
    """Same response, same fODF SH (the lmax-18 coefficients the model fits) -> same signal as dipy."""
    bvals, bvecs, shells = _scheme()
    zonal = _responses().zonal(FODF_LMAX)
    vertices = hemisphere.hemisphere_centres(8)
    model = SignalModel(vertices, bvecs, shells, zonal)
    fodf = torch.tensor(sh.sh_matrix(vertices, 8, "descoteaux07") @ np.random.randn(45))
    fodf_sh = model.fodf_sh(fodf).numpy()
    expected = _dipy_signal(bvals, bvecs, shells, zonal[0], fodf_sh, FODF_LMAX)
    signal = model(fodf, torch.zeros(2)).numpy()
    np.testing.assert_allclose(signal, expected, rtol=1e-6, atol=1e-12)  # measured 1.5e-15 relative


def test_signal_model_of_a_band_limited_fodf_is_close_to_dipy(float64):
    """End to end: an lmax-8 fODF on V+ (nside 8) through the regularised grid -> SH fit, against dipy on its SH.

    FODF_SMOOTH shrinks the l = 8 coefficients by ~1e-3, so this is not exact: measured 6.3e-5 relative
    (max error / max signal); bound 1.3e-4.
    """
    bvals, bvecs, shells = _scheme()
    zonal = _responses().zonal(FODF_LMAX)
    vertices = hemisphere.hemisphere_centres(8)
    model = SignalModel(vertices, bvecs, shells, zonal)
    fodf_sh = np.random.default_rng(0).normal(size=45)
    fodf = torch.tensor(sh.sh_matrix(vertices, 8, "descoteaux07") @ fodf_sh)
    expected = _dipy_signal(bvals, bvecs, shells, zonal[0], fodf_sh, 8)
    error = np.abs(model(fodf, torch.zeros(2)).numpy() - expected).max() / np.abs(expected).max()
    assert error < 1.3e-4


def test_unit_integral_fodf_with_isotropic_response_gives_the_response_signal(float64):
    bvals, bvecs, shells = _scheme()
    md = 7e-4  # mm²/s
    zonal = _responses(wm_evals=(md, md, md)).zonal(FODF_LMAX)
    vertices = hemisphere.hemisphere_centres(8)
    model = SignalModel(vertices, bvecs, shells, zonal)
    coeffs = np.random.default_rng(1).normal(size=45) * 0.05
    coeffs[0] = 1 / math.sqrt(4 * math.pi)  # unit integral; the rest integrates to 0
    fodf = torch.tensor(sh.sh_matrix(vertices, 8, "descoteaux07") @ coeffs)
    signal = model(fodf, torch.zeros(2)).numpy()
    # the l > 0 part leaks into the fitted f_00 through the regularised, non-orthogonal V+ fit: measured 6.3e-7
    np.testing.assert_allclose(signal, np.exp(-bvals * md), rtol=1.3e-6, atol=0)


def test_constant_fodf_gives_the_mean_of_the_wm_response(float64):
    """Mean over the sphere of exp(-b (l_perp + dl t^2)):
    exp(-b l_perp) sqrt(pi) erf(sqrt(a)) / (2 sqrt(a)), a = b dl."""
    bvals, bvecs, shells = _scheme()
    vertices = hemisphere.hemisphere_centres(8)
    model = SignalModel(vertices, bvecs, shells, _responses().zonal(FODF_LMAX))
    signal = model(torch.full((vertices.shape[0],), 1 / (4 * math.pi)), torch.zeros(2)).numpy()
    a = bvals * (WM_EVALS[0] - WM_EVALS[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.exp(-bvals * WM_EVALS[1]) * math.sqrt(math.pi) * erf(np.sqrt(a)) / (2 * np.sqrt(a))
    mean[a == 0] = 1.0  # b = 0
    np.testing.assert_allclose(signal, mean, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("tissue", "md"), [(1, GM_MD), (2, CSF_MD)])
def test_unit_isotropic_fraction_gives_the_isotropic_response(tissue, md, float64):
    bvals, bvecs, shells = _scheme()
    vertices = hemisphere.hemisphere_centres(8)
    model = SignalModel(vertices, bvecs, shells, _responses().zonal(FODF_LMAX))
    iso = torch.zeros(2)
    iso[tissue - 1] = 1.0
    signal = model(torch.zeros(vertices.shape[0]), iso).numpy()
    np.testing.assert_allclose(signal, S0[tissue] / S0[0] * np.exp(-bvals * md), atol=1e-14, rtol=0)


def test_signal_model_is_linear_in_fodf_and_fractions(float64):
    bvals, bvecs, shells = _scheme()
    vertices = hemisphere.hemisphere_centres(8)
    model = SignalModel(vertices, bvecs, shells, _responses().zonal(FODF_LMAX))
    f1, f2, i1, i2 = torch.randn(3, 384), torch.randn(3, 384), torch.rand(3, 2), torch.rand(3, 2)
    torch.testing.assert_close(
        model(f1 + 2 * f2, i1 - i2), model(f1, i1) + 2 * model(f2, 0 * i2) - model(0 * f1, i2), atol=1e-12, rtol=0
    )


@pytest.mark.parametrize(("lmax", "bound"), [(8, 2.5e-3), (18, 4.4e-2)])
def test_grid_to_sh_fit_reproduces_band_limited_fodfs(lmax, bound, float64):
    """V+ at nside 8 (384 samples) -> 190 coefficients with Laplace-Beltrami weight FODF_SMOOTH = 1e-5.

    The regularisation is not tiny at high degree: measured relative coefficient error 1.2e-3 (lmax 8)
    and 2.2e-2 (lmax 18; l = 18 shrinks by ~2%); bounds 2x. Degree 0 is not penalised.
    """
    bvals, bvecs, shells = _scheme()
    vertices = hemisphere.hemisphere_centres(8)
    model = SignalModel(vertices, bvecs, shells, _responses().zonal(FODF_LMAX))
    rng = np.random.default_rng(lmax)
    coeffs = np.zeros(sh.n_coeffs(FODF_LMAX))
    coeffs[: sh.n_coeffs(lmax)] = rng.normal(size=sh.n_coeffs(lmax))
    fitted = model.fodf_sh(torch.tensor(sh.sh_matrix(vertices, FODF_LMAX, "descoteaux07") @ coeffs)).numpy()
    assert np.linalg.norm(fitted - coeffs) / np.linalg.norm(coeffs) < bound
    assert abs(fitted[0] - coeffs[0]) < 1e-3 * np.abs(coeffs).max()


def test_single_tissue_model_ignores_the_empty_fraction(float64):
    bvals, bvecs, shells = _scheme()
    responses = TissueResponses(tissues=("wm",), shells=SHELL_BVALS, evals=[[WM_EVALS] * 2], s0=[1.0])
    model = SignalModel(hemisphere.hemisphere_centres(8), bvecs, shells, responses.zonal(FODF_LMAX))
    fodf = torch.rand(4, 384)
    torch.testing.assert_close(model(fodf, torch.zeros(4, 0)), fodf @ model.wm_operator.T, atol=0, rtol=0)


def test_signal_model_state_dict_is_empty_and_double_runs():
    bvals, bvecs, shells = _scheme()
    model = SignalModel(hemisphere.hemisphere_centres(8), bvecs, shells, _responses().zonal(FODF_LMAX))
    assert model.state_dict() == {}
    fresh = SignalModel(hemisphere.hemisphere_centres(8), bvecs, shells, _responses().zonal(FODF_LMAX))
    fresh.load_state_dict(model.state_dict())
    fodf, iso = torch.rand(3, 384), torch.rand(3, 2)
    torch.testing.assert_close(fresh(fodf, iso), model(fodf, iso), atol=0, rtol=0)
    out64 = model.double()(fodf.double(), iso.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64, fresh(fodf, iso).double(), atol=1e-5, rtol=0)


def test_signal_model_rejects_mismatched_bvecs():
    bvals, bvecs, shells = _scheme()
    with pytest.raises(ValueError, match=r"bvecs must have shape \(52, 3\), got \(51, 3\)"):
        SignalModel(hemisphere.hemisphere_centres(8), bvecs[:-1], shells, _responses().zonal(FODF_LMAX))


@pytest.mark.parametrize("zonal_shape", [(3, 3, 5), (3, 2, 10), (3, 3, 10, 1), (3, 10)])
def test_signal_model_rejects_bad_zonal_shapes(zonal_shape):
    bvals, bvecs, shells = _scheme()
    with pytest.raises(ValueError, match=r"zonal must be \(T, 3, >= 10\)"):
        SignalModel(hemisphere.hemisphere_centres(8), bvecs, shells, np.zeros(zonal_shape))


@pytest.mark.parametrize("seed", range(5))
def test_nnls_matches_scipy(seed):
    """Random 3-unknown problems, some with negative unconstrained solutions: scipy's active-set NNLS agrees."""
    from scipy.optimize import nnls as scipy_nnls

    from equidmri.recon.forward import nnls

    rng = np.random.default_rng(seed)
    design = rng.normal(size=(20, 40, 3))
    signal = rng.normal(size=(20, 40))
    ours = nnls(torch.from_numpy(design), torch.from_numpy(signal)).numpy()
    expected = np.stack([scipy_nnls(a, y)[0] for a, y in zip(design, signal)])
    assert np.any(expected == 0) and np.any(expected > 0)  # both kinds of active set occur
    np.testing.assert_allclose(ours, expected, atol=1e-9)


def test_nnls_fractions_recover_a_three_tissue_voxel():
    """Signal of a known fODF shape and known WM/GM/CSF fractions: the fit returns them (the shape's scale aside)."""
    bvals, bvecs, shells = _scheme()
    vertices = hemisphere.hemisphere_centres(8)
    model = SignalModel(vertices, bvecs, shells, _responses().zonal(FODF_LMAX), fractions="nnls").double()
    shape = torch.from_numpy(np.exp(8 * (vertices @ [0.0, 0.6, 0.8]) ** 2))[None]  # a smooth single fibre
    unit, _ = model.fit_fractions(shape, model(shape, torch.zeros(1, 2, dtype=torch.float64)))  # WM alone
    truth_iso = torch.tensor([[0.3, 0.2]], dtype=torch.float64)
    signal = model(0.5 * unit, truth_iso)
    fodf, iso = model.complete(7.0 * shape, None, b0=None, signal=signal)
    # the normal equations' ridge (1e-12 of their trace) shifts them by 6.5e-8: WM-like tissues are near-collinear
    torch.testing.assert_close(iso, truth_iso, atol=1e-6, rtol=0)
    torch.testing.assert_close(fodf, 0.5 * unit, atol=1e-6, rtol=0)


def test_fraction_modes():
    bvals, bvecs, shells = _scheme()
    vertices = hemisphere.hemisphere_centres(8)
    zonal = _responses().zonal(FODF_LMAX)
    fodf, iso, b0 = torch.rand(4, 384), torch.rand(4, 2), torch.full((4,), 2.0)
    raw = SignalModel(vertices, bvecs, shells, zonal, fractions="network").complete(fodf, iso, b0, None)
    assert raw[0] is fodf and raw[1] is iso
    model = SignalModel(vertices, bvecs, shells, zonal, fractions="b0")
    rescaled = model.complete(fodf, iso, b0, None)
    torch.testing.assert_close(model.b0_signal(*rescaled), b0)
    with pytest.raises(ValueError, match="fractions must be one of"):
        SignalModel(vertices, bvecs, shells, zonal, fractions="softmax")


def test_responses_on_a_subset_of_their_shells():
    responses = _responses()
    sub = responses.on_shells(np.array([2005.0]))
    np.testing.assert_array_equal(sub.shells, [2000.0])
    np.testing.assert_array_equal(sub.zonal(8)[:, 1], responses.zonal(8)[:, 2])
    with pytest.raises(ValueError, match="not all among"):
        responses.on_shells(np.array([3000.0]))
