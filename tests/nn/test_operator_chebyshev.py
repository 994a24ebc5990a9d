"""OperatorChebyshevConv: Chebyshev filters of a fixed operator on (B, V, C) maps."""

import numpy as np
import pytest
import torch

from equidmri.nn.layers import OperatorChebyshevConv

V = 12  # ring graph


def _ring_operator() -> np.ndarray:
    """Rescaled normalised Laplacian of a ring of V vertices (spectrum in [-1, 1]); circulant."""
    adjacency = np.roll(np.eye(V), 1, axis=1) + np.roll(np.eye(V), -1, axis=1)
    return (np.eye(V) - adjacency / 2) - np.eye(V)  # 2L/lambda_max - I with lambda_max = 2


def test_output_is_the_chebyshev_sum_with_t0_the_identity():
    torch.manual_seed(0)
    operator = _ring_operator()
    conv = OperatorChebyshevConv(operator, 2, 3, cheb_order=3).double()
    x = torch.randn(4, V, 2, dtype=torch.float64)
    a = torch.from_numpy(operator)
    polynomials = [torch.eye(V, dtype=torch.float64), a, 2 * a @ a - torch.eye(V, dtype=torch.float64)]
    expected = sum(p @ x @ conv.weight[k] for k, p in enumerate(polynomials)) + conv.bias
    torch.testing.assert_close(conv(x), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("shift", [1, 5])
def test_filters_commute_with_the_symmetries_of_the_operator(shift):
    torch.manual_seed(1)
    conv = OperatorChebyshevConv(_ring_operator(), 2, 2, cheb_order=4).double()
    x = torch.randn(3, V, 2, dtype=torch.float64)
    torch.testing.assert_close(conv(x.roll(shift, 1)), conv(x).roll(shift, 1), atol=1e-12, rtol=0)


def test_state_dict_holds_the_weights_only_and_reloads_to_the_same_outputs():
    torch.manual_seed(2)
    conv, fresh = OperatorChebyshevConv(_ring_operator(), 2, 3, 3), OperatorChebyshevConv(_ring_operator(), 2, 3, 3)
    assert set(conv.state_dict()) == {"weight", "bias"}
    fresh.load_state_dict(conv.state_dict())
    x = torch.randn(2, V, 2)
    torch.testing.assert_close(fresh(x), conv(x))
