"""Tests of equidmri.recon.losses: closed forms of the SHD eq. 4 terms and the TV mask rules."""

import math

import pytest
import torch

from equidmri.recon.losses import SPARSITY_SIGMA, DeconvLoss, LossWeights, total_variation

K18 = 190  # lmax-18 coefficients


def _constant_fodf(value, shape=(1, 2, 1, 1)):
    """SH of the constant fODF ``value`` everywhere: f_00 = value * sqrt(4 pi)."""
    fodf_sh = torch.zeros(shape + (K18,))
    fodf_sh[..., 0] = value * math.sqrt(4 * math.pi)
    return fodf_sh


def _terms(fodf_sh, weights=None, mask=None, signal=None, target=None):
    mask = torch.ones(fodf_sh.shape[:-1], dtype=torch.bool) if mask is None else mask
    signal = torch.zeros(fodf_sh.shape[:-1] + (3,)) if signal is None else signal
    target = torch.zeros_like(signal) if target is None else target
    return DeconvLoss(weights)(signal, target, fodf_sh, mask)


@pytest.mark.parametrize("value", (0.0, 0.05, 1 / (4 * math.pi)))
def test_non_negativity_term_is_zero_for_a_non_negative_fodf(value, float64):
    assert _terms(_constant_fodf(value))["nn"].item() == 0.0


@pytest.mark.parametrize("value", (-0.05, -1.0))
def test_non_negativity_term_of_a_negative_constant_fodf(value, float64):
    assert _terms(_constant_fodf(value))["nn"].item() == pytest.approx(value**2, rel=1e-12)


@pytest.mark.parametrize("value", (0.0, 0.01, -0.3))
def test_sparsity_term_of_a_constant_fodf(value, float64):
    expected = 2 * math.log1p(value**2 / (2 * SPARSITY_SIGMA))
    assert _terms(_constant_fodf(value))["sparsity"].item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_non_negativity_counts_only_the_negative_lobes(float64):
    # f = a + b Y_20-like lobe: dense values on the 3072 directions are known through the dense basis
    fodf_sh = torch.zeros(1, 1, 1, 1, K18)
    fodf_sh[..., 0], fodf_sh[..., 3] = 0.1, 0.5  # column 3 is (l, m) = (2, 0)
    loss = DeconvLoss()
    dense = fodf_sh @ loss.dense_basis.T
    mask = torch.ones(1, 1, 1, 1, dtype=torch.bool)
    terms = loss(torch.zeros(1, 1, 1, 1, 2), torch.zeros(1, 1, 1, 1, 2), fodf_sh, mask)
    assert dense.min() < 0 < dense.max()
    assert terms["nn"].item() == pytest.approx(dense.clamp(max=0).square().mean().item(), rel=1e-12)


def test_reconstruction_term_is_the_mean_squared_error_inside_the_mask(float64):
    signal = torch.zeros(1, 3, 1, 1, 4)
    target = torch.zeros(1, 3, 1, 1, 4)
    target[0, 0] = 1.0
    target[0, 1] = 2.0
    target[0, 2] = 100.0  # outside the mask
    mask = torch.tensor([True, True, False]).reshape(1, 3, 1, 1)
    terms = _terms(_constant_fodf(0.1, (1, 3, 1, 1)), mask=mask, signal=signal, target=target)
    assert terms["recon"].item() == pytest.approx((4 * 1.0 + 4 * 4.0) / 8, rel=1e-12)


def test_total_is_the_weighted_sum(float64):
    weights = LossWeights(nn=0.3, sparsity=2e-3, tv=0.7)
    fodf_sh = torch.randn(1, 2, 2, 1, K18) * 0.1
    signal, target = torch.randn(1, 2, 2, 1, 3), torch.randn(1, 2, 2, 1, 3)
    terms = _terms(fodf_sh, weights, signal=signal, target=target)
    expected = terms["recon"] + 0.3 * terms["nn"] + 2e-3 * terms["sparsity"] + 0.7 * terms["tv"]
    assert terms["tv"].item() > 0
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-12)


def test_tv_weight_zero_skips_the_tv_term(float64):
    terms = _terms(torch.randn(1, 2, 2, 1, K18), LossWeights(tv=0.0))
    assert terms["tv"].item() == 0.0


def test_tv_is_zero_for_identical_fodfs_in_neighbouring_voxels(float64):
    fodf = torch.rand(8).expand(1, 3, 2, 2, 8)
    assert total_variation(fodf, torch.ones(1, 3, 2, 2, dtype=torch.bool)).item() == pytest.approx(0.0, abs=1e-15)


def test_tv_is_invariant_to_the_scale_of_each_voxel(float64):
    fodf = torch.rand(1, 3, 2, 2, 8)
    scale = torch.rand(1, 3, 2, 2, 1) + 0.5
    mask = torch.ones(1, 3, 2, 2, dtype=torch.bool)
    assert total_variation(fodf * scale, mask).item() == pytest.approx(total_variation(fodf, mask).item(), rel=1e-7)


def test_tv_closed_form_counts_each_face_pair_once(float64):
    # 2x2x2 voxels alternating along z between e0 and e1 (V = 2): 4 z-pairs differ by mean((e1 - e0)^2) = 1,
    # the 4 x-pairs and 4 y-pairs agree: TV = 4 / 12.
    fodf = torch.zeros(1, 2, 2, 2, 2)
    fodf[..., 0, 0] = 1.0
    fodf[..., 1, 1] = 1.0
    tv = total_variation(fodf, torch.ones(1, 2, 2, 2, dtype=torch.bool))
    assert tv.item() == pytest.approx(1 / 3, rel=1e-7)  # NORM_EPS = 1e-8 shifts it by ~1e-8


def test_tv_ignores_pairs_with_a_voxel_outside_the_mask(float64):
    fodf = torch.zeros(1, 3, 1, 1, 2)
    fodf[0, 0, ..., 0] = fodf[0, 1, ..., 0] = 1.0
    fodf[0, 2, ..., 1] = 1.0  # different, but outside the mask
    mask = torch.tensor([True, True, False]).reshape(1, 3, 1, 1)
    assert total_variation(fodf, mask).item() == 0.0
    mask_gap = torch.tensor([True, False, True]).reshape(1, 3, 1, 1)
    assert total_variation(fodf, mask_gap).item() == 0.0  # no pair has both voxels in the mask
    assert total_variation(fodf, torch.ones(1, 3, 1, 1, dtype=torch.bool)).item() == pytest.approx(0.5, rel=1e-7)


def test_loss_state_dict_is_empty_and_double_runs():
    loss = DeconvLoss()
    assert loss.state_dict() == {}
    fodf_sh = torch.randn(1, 2, 1, 1, K18)
    mask = torch.ones(1, 2, 1, 1, dtype=torch.bool)
    signal, target = torch.randn(1, 2, 1, 1, 3), torch.randn(1, 2, 1, 1, 3)
    total32 = loss(signal, target, fodf_sh, mask)["total"]
    total64 = loss.double()(signal.double(), target.double(), fodf_sh.double(), mask)["total"]
    assert total64.dtype == torch.float64
    assert total64.item() == pytest.approx(total32.item(), rel=1e-4)


def test_loss_rejects_an_empty_mask():
    fodf_sh = torch.zeros(1, 2, 1, 1, K18)
    with pytest.raises(ValueError, match="the loss mask holds no voxel"):
        _terms(fodf_sh, mask=torch.zeros(1, 2, 1, 1, dtype=torch.bool))


@pytest.mark.parametrize("field", ("nn", "sparsity", "tv"))
@pytest.mark.parametrize("value", (-1e-3, float("nan")))
def test_loss_weights_reject_negative_or_nan(field, value):
    with pytest.raises(ValueError, match=f"loss weight {field} must be >= 0"):
        LossWeights(**{field: value})


def test_default_loss_weights_are_the_shd_tv_reference():
    assert LossWeights() == LossWeights(nn=0.1, sparsity=5e-5, tv=0.5)
