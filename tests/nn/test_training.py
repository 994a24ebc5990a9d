"""The shared MSE training loop of voxel-wise networks (equidmri.nn.training)."""

import numpy as np
import pytest
import torch
from torch import nn

from equidmri.nn.training import fit_mse, predict_batched


def _linear_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 3))
    return x, x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3


def test_fit_mse_learns_a_linear_map_and_is_reproducible():
    x, y = _linear_problem()
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        net = nn.Linear(3, 1)
        losses = fit_mse(net, x, y, epochs=40, batch_size=64, lr=0.1, seed=1)
        weights.append(net.weight.detach().clone())
    assert losses[-1] < 1e-3 * losses[0]
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)
    np.testing.assert_allclose(weights[0].numpy(), [[1.0, -2.0, 0.5]], atol=0.02)
    assert not net.training
    np.testing.assert_allclose(predict_batched(net, x), y, atol=0.05)


def test_predict_batched_of_no_voxel_is_empty():
    assert predict_batched(nn.Linear(3, 1), np.zeros((0, 3))).shape == (0,)


@pytest.mark.parametrize(
    ("inputs", "targets", "settings", "message"),
    [
        (np.zeros((4, 3)), np.zeros((5, 1)), {}, "same non-zero length"),
        (np.zeros((0, 3)), np.zeros((0, 1)), {}, "same non-zero length"),
        (np.full((4, 3), np.nan), np.zeros((4, 1)), {}, "must be finite"),
        (np.zeros((4, 3)), np.zeros((4, 1)), {"epochs": 0}, "epochs and batch_size must be >= 1"),
        (np.zeros((4, 3)), np.zeros((4, 1)), {"lr": 0.0}, "lr > 0"),
    ],
)
def test_fit_mse_refuses_bad_data_and_settings(inputs, targets, settings, message):
    with pytest.raises(ValueError, match=message):
        fit_mse(nn.Linear(3, 1), inputs, targets, **{"epochs": 1, "batch_size": 2, "lr": 0.1, "seed": 0, **settings})
