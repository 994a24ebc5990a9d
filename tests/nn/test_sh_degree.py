"""SHDegreeLinear and the activation-space layers: exact rotation equivariance of per-degree mixing; activations
are (nearly) equivariant in signal space and not in SH space."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from equidmri.nn.layers import SHDegreeLinear, SHSpaceActivation, SignalSpaceActivation, SphereGrid
from equidmri.sphere.sh import sh_rotation_matrix

LMAX = 6


def rotation_operator() -> torch.Tensor:
    rotation = Rotation.from_euler("zyz", [0.3, 1.1, -0.7]).as_matrix()
    return torch.tensor(sh_rotation_matrix(rotation, LMAX, "descoteaux07", "descoteaux07"))


def relative_rotation_error(layer, coeffs: torch.Tensor) -> float:
    rotate = rotation_operator()
    expected = layer(coeffs) @ rotate.T
    return float((layer(coeffs @ rotate.T) - expected).norm() / expected.norm())


def test_per_degree_mixing_commutes_with_rotations_exactly(float64):
    layer = SHDegreeLinear(3, 5, LMAX)
    torch.nn.init.normal_(layer.bias)  # the l = 0 bias is invariant: it must not break equivariance
    coeffs = torch.randn(4, 3, 28, dtype=torch.float64)
    rotate = rotation_operator()
    torch.testing.assert_close(layer(coeffs @ rotate.T), layer(coeffs) @ rotate.T, atol=1e-10, rtol=0)


def test_per_degree_mixing_refuses_the_wrong_coefficient_count():
    with pytest.raises(ValueError, match="expected"):
        SHDegreeLinear(2, 2, LMAX)(torch.zeros(1, 2, 15))
    with pytest.raises(ValueError, match="channel counts"):
        SHDegreeLinear(0, 2, LMAX)


def test_relu_is_nearly_equivariant_in_signal_space_and_not_in_sh_space(float64):
    grid = SphereGrid(8, hemisphere=True)  # 384 pixels for 28 coefficients
    coeffs = torch.randn(6, 2, 28, dtype=torch.float64)
    signal = relative_rotation_error(SignalSpaceActivation(torch.nn.ReLU(), grid, LMAX), coeffs)
    sh = relative_rotation_error(torch.nn.ReLU(), coeffs)
    assert signal < 0.02  # measured 0.008 (grid sampling of a non-band-limited function)
    assert sh > 0.5 and sh > 10 * signal  # measured 1.15


def test_sh_space_activation_with_identity_is_the_band_limited_projection(float64):
    grid = SphereGrid(4, hemisphere=True)
    layer = SHSpaceActivation(torch.nn.Identity(), grid, LMAX)
    values = torch.randn(3, grid.n_vertices, dtype=torch.float64)
    once = layer(values)
    torch.testing.assert_close(layer(once), once, atol=1e-10, rtol=0)
    assert not np.allclose(once.numpy(), values.numpy())
