"""Tests of equidmri.recon.refine: the per-voxel refinement of a network's fODFs under the deconvolution loss."""

import math

import numpy as np
import pytest
import torch

from equidmri.dmri.gradients import find_shells
from equidmri.dmri.response import TissueResponses
from equidmri.recon import refine
from equidmri.recon.forward import FODF_LMAX, iso_operator, wm_sh_operator
from equidmri.recon.refine import FODFRefiner
from equidmri.sphere import sh

SHELL_BVALS = (1000.0, 3000.0)  # s/mm²
RESPONSES = TissueResponses(
    tissues=("wm", "gm", "csf"),
    shells=SHELL_BVALS,
    evals=[[(1.7e-3, 3e-4, 3e-4)] * 2, [[8e-4] * 3] * 2, [[3e-3] * 3] * 2],  # mm²/s
    s0=(100.0, 80.0, 150.0),
)


def _scheme(n_per_shell=40, seed=0):
    rng = np.random.default_rng(seed)
    bvecs = rng.normal(size=(2 * n_per_shell + 1, 3))
    bvecs /= np.linalg.norm(bvecs, axis=1, keepdims=True)
    bvals = np.r_[0.0, [SHELL_BVALS[0]] * n_per_shell, [SHELL_BVALS[1]] * n_per_shell]
    bvecs[0] = 0.0
    return bvecs, find_shells(bvals)


def _crossing_voxels(bvecs, shells, n=6, seed=1):
    """Noise-free voxels: two fibres 60-90 deg apart (WM 0.7, CSF 0.3), their lmax-8 fODF SH and their signal."""
    rng = np.random.default_rng(seed)
    zonal = RESPONSES.zonal(FODF_LMAX)
    first = rng.normal(size=(n, 3))
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    helper = np.cross(first, rng.normal(size=(n, 3)))
    helper /= np.linalg.norm(helper, axis=1, keepdims=True)
    angle = np.radians(rng.uniform(60, 90, size=(n, 1)))
    second = np.cos(angle) * first + np.sin(angle) * helper
    # the lmax-8 SH of a delta at a fibre (unit integral: c_00 = Y_00) is Y_lm(fibre); WM fraction 0.7
    delta = sh.sh_matrix(np.concatenate([first, second]), 8, "descoteaux07")
    fodf = 0.35 * (delta[:n] + delta[n:])
    iso = np.tile([0.0, 0.3], (n, 1))
    signal = fodf @ wm_sh_operator(bvecs, shells, zonal, 8).T + iso @ iso_operator(shells, zonal)
    return first, second, torch.tensor(fodf, dtype=torch.float32), torch.tensor(signal, dtype=torch.float32)


@pytest.fixture(scope="module")
def setup():
    bvecs, shells = _scheme()
    refiner = FODFRefiner(bvecs, shells, RESPONSES.zonal(FODF_LMAX))
    return bvecs, shells, refiner


def test_zero_steps_truncate_the_network_answer(setup):
    _, _, refiner = setup
    fodf = torch.randn(5, 190)
    iso = torch.rand(5, 2)
    refined, fractions = refiner(fodf, iso, torch.rand(5, 81), steps=0)
    assert torch.equal(refined, fodf[:, :45]) and torch.equal(fractions, iso)


def test_refinement_lowers_each_voxels_loss_and_finds_the_crossing_from_a_flat_start(setup):
    bvecs, shells, refiner = setup
    first, second, _, signal = _crossing_voxels(bvecs, shells)
    flat = torch.zeros(len(signal), 45)
    flat[:, 0] = 0.5 / math.sqrt(4 * math.pi)  # isotropic WM fODF of fraction 0.5: no direction preferred
    iso = torch.full((len(signal), 2), 0.1)
    before = refiner.loss(flat, iso, signal)
    refined, fractions = refiner(flat, iso, signal, steps=100)
    assert refiner.loss(refined, fractions, signal) < 0.2 * before
    assert torch.all(fractions >= 0)
    assert fractions[:, 1].mean() == pytest.approx(0.3, abs=0.1)  # CSF
    peaks = sh.sh_matrix(np.concatenate([first, second]), 8, "descoteaux07")
    odf_at_fibres = (torch.tensor(peaks, dtype=torch.float32) @ refined.T.repeat(1, 2)).diagonal()
    mean_value = refined[:, 0].repeat(2) / math.sqrt(4 * math.pi)
    assert torch.all(odf_at_fibres > 3 * mean_value)  # both fibres stand out of the refined fODF


def test_voxels_are_refined_independently_and_under_inference_mode(setup):
    bvecs, shells, refiner = setup
    _, _, fodf, signal = _crossing_voxels(bvecs, shells, n=8, seed=2)
    start = fodf + 0.02 * torch.randn_like(fodf)
    iso = torch.full((8, 2), 0.2)
    together, _ = refiner(start, iso, signal, steps=20)
    with torch.inference_mode():
        halves = [refiner(start[s], iso[s], signal[s], steps=20)[0] for s in (slice(0, 3), slice(3, 8))]
    assert torch.allclose(torch.cat(halves), together, atol=1e-5)
    assert not torch.allclose(together, start[:, :45], atol=1e-3)  # it moved


def test_too_few_coefficients_is_an_error(setup):
    with pytest.raises(ValueError, match="fewer than lmax 8"):
        setup[2](torch.zeros(2, 15), torch.zeros(2, 2), torch.zeros(2, 81), steps=1)


@pytest.mark.parametrize(("nonnegativity", "sparsity"), [(1.0, 0.0), (1.0, 5e-5), (0.0, 5e-5)])
def test_analytic_gradient_is_the_gradient_of_the_loss(nonnegativity, sparsity):
    bvecs, shells = _scheme()
    refiner = FODFRefiner(bvecs, shells, RESPONSES.zonal(FODF_LMAX), nonnegativity=nonnegativity, sparsity=sparsity)
    refiner = refiner.double()
    _, _, fodf, signal = _crossing_voxels(bvecs, shells, n=4, seed=3)
    coeffs = (fodf + 0.05 * torch.randn_like(fodf)).double().requires_grad_(True)  # negative lobes and ripples
    raw = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    refiner.loss(coeffs, torch.nn.functional.softplus(raw), signal.double()).backward()
    grad_sh, grad_raw = refiner.gradient(coeffs.detach(), raw.detach(), signal.double())
    assert torch.allclose(grad_sh, coeffs.grad, rtol=1e-9, atol=1e-12)
    assert torch.allclose(grad_raw, raw.grad, rtol=1e-9, atol=1e-12)


def test_penalty_products_in_bfloat16_stay_close_to_float32(setup):
    """The products with the penalty directions' basis in bfloat16 (its 8-bit mantissa): the gradient within 1 %
    of float32's, and 100 steps land within 1 % of float32's answer (relative L2), yet not on it (bfloat16 ran)."""
    bvecs, shells, refiner = setup
    _, _, fodf, signal = _crossing_voxels(bvecs, shells, n=8, seed=6)
    start = fodf + 0.05 * torch.randn(fodf.shape, generator=torch.Generator().manual_seed(1))
    raw = torch.zeros(8, 2)
    exact = refiner.gradient(start, raw, refiner.fitted(signal))[0]
    low = refiner.gradient(start, raw, refiner.fitted(signal), refiner._workspace(8, start, torch.bfloat16))[0]
    assert low.dtype == torch.float32
    assert (low - exact).norm() < 0.01 * exact.norm()
    iso = torch.full((8, 2), 0.2)
    full = refiner(start, iso, signal, steps=100, precision="float32")[0]
    half = refiner(start, iso, signal, steps=100, precision="bfloat16")[0]
    assert half.dtype == torch.float32 and 0 < (half - full).norm() < 0.01 * full.norm()
    with pytest.raises(ValueError, match="precision must be one of"):
        refiner(start, iso, signal, steps=1, precision="float16")


def test_column_major_inputs_give_the_c_order_result(setup):
    """The network's fractions come column-major: the refinement (torch's fused Adam, per voxel and with the spatial
    term) gives what C-order inputs give."""
    refiner, mask, start, iso, signal = _tv_problem(setup)
    iso = torch.rand(8, 2, generator=torch.Generator().manual_seed(2)) * 0.4
    columns = iso.t().contiguous().t()  # column-major
    wide = torch.cat([start, torch.zeros(8, 10)], 1).t().contiguous().t()
    assert not columns.is_contiguous()
    with pytest.raises(ValueError, match="C order"):  # torch's fused Adam kernel would pair elements wrongly
        refine._AdamState(start.clone(), columns.clone())
    for refine_ in (lambda *a: refiner(*a, steps=10), lambda *a: refiner.refine_volume(*a, mask, 10, 0.02)):
        expected = refine_(start, iso, signal)
        for got, want in zip(refine_(wide, columns, signal), expected):
            assert torch.allclose(got, want, atol=1e-6)


def test_chunks_on_threads_give_the_single_threaded_result(setup, monkeypatch):
    bvecs, shells, refiner = setup
    _, _, fodf, signal = _crossing_voxels(bvecs, shells, n=8, seed=4)
    start, iso = fodf + 0.02 * torch.randn_like(fodf), torch.full((8, 2), 0.2)
    monkeypatch.setattr(refine, "CHUNK", 3)  # 3 chunks
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = refiner(start, iso, signal, steps=10)
        torch.set_num_threads(2)
        shared = refiner(start, iso, signal, steps=10)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(threads)
    assert torch.allclose(alone[0], shared[0], atol=1e-6) and torch.allclose(alone[1], shared[1], atol=1e-6)


def _tv_problem(setup):
    """Eight voxels of a 2×2×2 block (plus one voxel outside the mask) with noisy starts."""
    bvecs, shells, refiner = setup
    mask = np.zeros((2, 2, 3), dtype=bool)
    mask[:, :, :2] = True
    _, _, fodf, signal = _crossing_voxels(bvecs, shells, n=8, seed=5)
    generator = torch.Generator().manual_seed(0)
    start = fodf + 0.05 * torch.randn(fodf.shape, generator=generator)
    return refiner, mask, start, torch.full((8, 2), 0.2), signal


@pytest.mark.parametrize("block", (1, 3))
def test_tv_refinement_is_adam_on_the_loss_plus_the_spatial_term(setup, monkeypatch, block):
    """Every voxel's Adam step on the loss plus the spatial term, with the neighbours' unit fODFs of the block's
    start (of each step with ``TV_BLOCK`` 1)."""
    refiner, mask, start, iso, signal = _tv_problem(setup)
    tv, steps = 0.02, 4
    pairs = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)]
    coeffs = start.clone().requires_grad_(True)  # the reference: torch.optim.Adam on the autograd loss
    raw = torch.log(torch.expm1(iso.clone())).requires_grad_(True)
    optimiser = torch.optim.Adam([coeffs, raw], lr=refine.REFINE_LR)
    for step in range(steps):
        unit = coeffs / coeffs.norm(dim=1, keepdim=True)
        if step % block == 0:
            frozen = unit.detach()
        optimiser.zero_grad()
        # each voxel against its neighbours as they were: the gradient of the sum over pairs of |u_i - u_j|^2
        spatial = sum((unit[i] - frozen[j]).square().sum() + (unit[j] - frozen[i]).square().sum() for i, j in pairs)
        (refiner.loss(coeffs, torch.nn.functional.softplus(raw), signal) + tv * spatial).backward()
        optimiser.step()
    monkeypatch.setattr(refine, "CHUNK", 3)  # 3 chunks, on 2 threads where torch has them
    monkeypatch.setattr(refine, "TV_BLOCK", block)
    ours, ours_iso = refiner.refine_volume(start, iso, signal, mask, steps, tv, precision="float32")
    assert torch.allclose(ours, coeffs.detach(), atol=1e-5)
    assert torch.allclose(ours_iso, torch.nn.functional.softplus(raw).detach(), atol=1e-5)
    plain = refiner(start, iso, signal, steps, precision="float32")  # without the term: the per-voxel refinement
    assert torch.allclose(refiner.refine_volume(start, iso, signal, mask, steps, 0.0, precision="float32")[0], plain[0])
    assert not torch.allclose(ours, plain[0], atol=1e-4)


def test_tv_refinement_checks_its_inputs(setup):
    refiner, mask, start, iso, signal = _tv_problem(setup)
    with pytest.raises(ValueError, match="TV weight must be >= 0"):
        refiner.refine_volume(start, iso, signal, mask, 2, -1.0)
    with pytest.raises(ValueError, match="7 voxels of signal for a mask of 8"):
        refiner.refine_volume(start[:7], iso[:7], signal[:7], mask, 2, 0.1)


def test_with_the_wm_alone_the_b0_volumes_are_not_fitted(setup):
    bvecs, shells, with_iso = setup
    wm_alone = TissueResponses(("wm",), SHELL_BVALS, RESPONSES.evals[:1], RESPONSES.s0[:1])
    refiner = FODFRefiner(bvecs, shells, wm_alone.zonal(FODF_LMAX))
    assert refiner.fitted_volumes.tolist() == list(range(1, len(bvecs)))  # volume 0 is the b=0
    _, _, fodf, signal = _crossing_voxels(bvecs, shells, n=6, seed=6)
    start, brighter = fodf + 0.02 * torch.randn_like(fodf), signal.clone()
    brighter[:, 0] *= 1.5  # more free water at b=0 than the DW volumes show
    none, mask = torch.zeros(6, 0), np.ones((6, 1, 1), dtype=bool)
    assert torch.equal(refiner(start, none, signal, steps=20)[0], refiner(start, none, brighter, steps=20)[0])
    same = [refiner.refine_volume(start, none, s, mask, 5, 0.01)[0] for s in (signal, brighter)]
    assert torch.equal(*same)
    # with isotropic tissues the b=0 volume is fitted: it moves the answer
    iso = torch.full((6, 2), 0.2)
    assert not torch.allclose(with_iso(start, iso, signal, 20)[0], with_iso(start, iso, brighter, 20)[0], atol=1e-4)


def test_the_spatial_terms_default_weight_is_scaled_to_the_fitted_volumes():
    wm_alone = TissueResponses(("wm",), (1000.0,), np.asarray(RESPONSES.evals)[:1, :1], RESPONSES.s0[:1])
    for directions, expected in ((29, 3e-5), (30, 2.9e-5), (64, 1.36e-5), (90, 9.67e-6)):
        rng = np.random.default_rng(directions)
        bvecs = rng.normal(size=(directions + 2, 3))
        bvecs /= np.linalg.norm(bvecs, axis=1, keepdims=True)
        bvecs[:2] = 0.0
        shells = find_shells(np.r_[0.0, 0.0, [1000.0] * directions])
        tv, reason = FODFRefiner(bvecs, shells, wm_alone.zonal(FODF_LMAX)).default_tv()
        assert tv == pytest.approx(expected, rel=1e-9) and reason.startswith(f"{directions} fitted volumes: ")
        assert reason.endswith(f"3e-05 x 29 / {directions} = {expected:g}")
    # with GM and CSF (the b=0 volumes fitted too) the term only where the fit is underdetermined: 45 + 2 unknowns
    for per_shell, expected in ((40, 0.0), (23, 0.0), (22, refine.REFINE_TV)):
        bvecs, shells = _scheme(per_shell)
        tv, reason = FODFRefiner(bvecs, shells, RESPONSES.zonal(FODF_LMAX)).default_tv()
        sign = "<" if expected else ">="
        assert tv == expected and reason.startswith(
            f"{2 * per_shell + 1} fitted volumes {sign} 47 unknowns (GM and CSF)"
        )
