"""Tests of equidmri.nn.layers.support: dilated masks and the compact layout of masked execution."""

import itertools

import pytest
import torch

from equidmri.nn.layers import support as support_module
from equidmri.nn.layers.stencil import isotropic_stencil
from equidmri.nn.layers.support import MaskSupport


def _brute_force_dilation(mask, k):
    """Voxels within Chebyshev distance k of a mask voxel, clipped to the volume."""
    out = torch.zeros_like(mask)
    for x, y, z in mask.nonzero().tolist():
        out[max(x - k, 0) : x + k + 1, max(y - k, 0) : y + k + 1, max(z - k, 0) : z + k + 1] = True
    return out


def test_each_index_is_the_mask_dilated_by_k_voxels():
    mask = torch.rand(7, 6, 5) < 0.05
    mask[0, 0, 0] = True  # on the border: the dilation stops at the volume's edge
    support = MaskSupport(mask, 3)
    for k in range(4):
        expected = _brute_force_dilation(mask, k).flatten().nonzero().flatten()
        assert torch.equal(support.index[k], expected)
        assert support.size(k) == expected.numel()
    assert support.size(3) > support.size(0)  # the dilation really grows


def test_compact_dense_and_restrict_agree():
    mask = torch.rand(5, 4, 6) < 0.2
    support = MaskSupport(mask, 2)
    x = torch.randn(2, 3, 5, 4, 6, 4)
    for k_from, k_to in itertools.product(range(3), repeat=2):
        if k_to > k_from:
            continue
        compact = support.compact(x, k_from)
        assert compact.shape == (2, 3, support.size(k_from), 1, 1, 4)
        torch.testing.assert_close(support.restrict(compact, k_from, k_to), support.compact(x, k_to))
    dense = support.dense(support.compact(x, 1), 1)
    inside = _brute_force_dilation(mask, 1)
    torch.testing.assert_close(dense[:, :, inside], x[:, :, inside])
    assert dense[:, :, ~inside].abs().max().item() == 0.0


@pytest.mark.parametrize(
    ("mask", "radius"), [(torch.ones(4, 4, dtype=torch.bool), 1), (torch.ones(4, 4, 4, dtype=torch.bool), -1)]
)
def test_support_rejects_bad_input(mask, radius):
    with pytest.raises(ValueError, match="3D|radius"):
        MaskSupport(mask, radius)


@pytest.mark.parametrize("out_channels", [3, 6])  # C_in = 5: mixed first (5 > 3), spread first (5 <= 6)
@pytest.mark.parametrize("per_vertex", [True, False])
@pytest.mark.parametrize("chunk", [1, 7 * 6 * 5 * 3 * 2 * 2, 10**9])  # one vertex, two vertices, all at once
def test_convolve_is_the_stencil_of_the_mixed_classes_on_the_dense_grid(chunk, per_vertex, out_channels, monkeypatch):
    monkeypatch.setattr(support_module, "SPREAD_CHUNK_ELEMENTS", chunk)
    mask = torch.rand(7, 6, 5) < 0.2
    support = MaskSupport(mask, 2)
    parts = [support.compact(torch.randn(2, 5, 7, 6, 5, c), 2) for c in (2, 3)]  # a batch of 2, two parts
    weights = [torch.randn(*((5,) if per_vertex else ()), c, 4 * out_channels) for c in (2, 3)]
    mixed = sum(support.dense(x, 2) @ (w[:, None, None] if per_vertex else w) for x, w in zip(parts, weights))
    expected = support.compact(isotropic_stencil(mixed.unflatten(-1, (4, out_channels)).unbind(-2)), 1)
    torch.testing.assert_close(support.convolve(parts, torch.cat(weights, dim=-2), out_channels, 2), expected)
