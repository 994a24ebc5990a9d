"""The FCN and the S-CNN: shapes, the exact sphere mean of the readout, rotation invariance."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from equidmri.microstructure.networks import FCN, SCNN_NSIDE, SphericalCNN
from equidmri.microstructure.simulate import sample_tensors
from equidmri.microstructure.tensor import adc_profile
from equidmri.sphere.hemisphere import hemisphere_centres
from equidmri.sphere.sh import mean_weights

INVARIANCE_TOL = 1e-3  # |ΔFA|, the target


@pytest.fixture(scope="module")
def rotated_pairs():
    """ADC profiles of 300 tissue tensors and of the same tensors under random rotations, float64."""
    tensors = sample_tensors(300, np.random.default_rng(0))
    rotations = Rotation.random(300, random_state=1).as_matrix()
    rotated = rotations @ tensors @ rotations.transpose(0, 2, 1)
    return [torch.tensor(adc_profile(t, SCNN_NSIDE), dtype=torch.float64) for t in (tensors, rotated)]


def test_fcn_has_the_papers_layers():
    network = FCN()
    widths = [layer.out_features for layer in network.layers if isinstance(layer, torch.nn.Linear)]
    assert widths == [100, 100, 10, 1]
    assert network(torch.ones(4, 6)).shape == (4,)


def test_mean_weights_integrate_even_polynomials_exactly_where_pixel_means_do_not():
    centres = hemisphere_centres(8)
    weights = mean_weights(centres, lmax=8)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    for power, exact in ((2, 1 / 3), (4, 1 / 5), (8, 1 / 9)):  # mean of z^p over the sphere = 1 / (p + 1)
        assert weights @ centres[:, 2] ** power == pytest.approx(exact, abs=1e-12)
    assert abs(centres[:, 2].__pow__(2).mean() - 1 / 3) > 1e-4  # plain HEALPix mean: not exact at degree 2


def test_scnn_prediction_is_invariant_to_rotations_of_the_tensor(rotated_pairs):
    torch.manual_seed(0)
    network = SphericalCNN().double().eval()
    before, after = rotated_pairs
    with torch.no_grad():
        fa, fa_rotated = network(before), network(after)
    assert fa.std() > 0.01  # a network whose output varies, so the test can fail
    assert (fa - fa_rotated).abs().max() < INVARIANCE_TOL


def test_the_invariance_test_catches_a_non_invariant_readout(rotated_pairs):
    torch.manual_seed(0)
    network = SphericalCNN().double().eval()
    network.mean_weights[:] = torch.linspace(0.0, 2.0, network.grid.n_vertices) / network.grid.n_vertices
    before, after = rotated_pairs
    with torch.no_grad():
        assert (network(before) - network(after)).abs().max() > INVARIANCE_TOL


def test_scnn_rejects_a_profile_on_the_wrong_grid():
    with pytest.raises(ValueError, match=r"expected \(B, 384\) ADC profiles"):
        SphericalCNN(8)(torch.zeros(2, 96))
