"""The denoisers: rotation invariance of the SH-space network (signal-space activations) rebuilt on rotated
b-vectors, and training that lowers the error of noisy phantom voxels."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from equidmri.data import load_real_volume
from equidmri.denoise import DenoiseConfig, DenoiserSpec, SignalDenoiser, apply_denoiser, train_denoiser
from equidmri.sims.phantoms import make_phantom
from equidmri.sims.synthesis import Protocol, add_rician_noise


@pytest.fixture(scope="module")
def scheme():
    data = load_real_volume("small_64D")
    return data.bvals, data.bvecs


def rotated_output_change(spec: DenoiserSpec, bvals: np.ndarray, bvecs: np.ndarray) -> float:
    """||D_Rb(x) - D_b(x)|| / ||D_b(x)||: the same weights on the same values, the directions rotated."""
    torch.manual_seed(1)
    network = SignalDenoiser(spec, bvals, bvecs).double()
    rotation = Rotation.from_euler("zyz", [0.4, 0.9, -1.3]).as_matrix()
    rotated = SignalDenoiser(spec, bvals, bvecs @ rotation.T).double()
    rotated.load_state_dict(network.state_dict())
    x = torch.rand(16, network.n_dw, dtype=torch.float64) * 0.6 + 0.2
    with torch.no_grad():
        out = network(x)
        return float((rotated(x) - out).norm() / out.norm())


def test_sh_network_with_signal_space_relu_is_rotation_invariant_and_sh_space_relu_is_not(scheme, float64):
    signal = rotated_output_change(DenoiserSpec("sh", "relu", "signal", width=8), *scheme)
    sh = rotated_output_change(DenoiserSpec("sh", "relu", "sh", width=8), *scheme)
    assert signal < 0.025  # measured 0.011 (HEALPix nside 4 grid of the activations)
    assert sh > 0.1 and sh > 10 * signal  # measured 0.28


def test_sh_network_in_its_linear_regime_is_exactly_invariant(scheme, float64):
    # tanh near 0 is linear: with tiny inputs the network is linear, so per-degree mixing is exactly equivariant
    spec = DenoiserSpec("sh", "tanh", "sh", width=4)
    torch.manual_seed(2)
    network = SignalDenoiser(spec, *scheme).double()
    for layer in network.body[::2]:
        layer.bias.data.zero_()
    rotation = Rotation.from_euler("zyz", [0.1, 0.5, 0.2]).as_matrix()
    rotated = SignalDenoiser(spec, scheme[0], scheme[1] @ rotation.T).double()
    rotated.load_state_dict(network.state_dict())
    x = torch.rand(4, network.n_dw, dtype=torch.float64) * 1e-6
    with torch.no_grad():
        torch.testing.assert_close(rotated(x), network(x), atol=1e-18, rtol=1e-10)


def test_dense_layer_has_no_sh_space():
    with pytest.raises(ValueError, match="no SH space"):
        DenoiserSpec("dense", "relu", "sh")
    with pytest.raises(ValueError, match="activation must be one of"):
        DenoiserSpec("sh", "swish")


def test_training_lowers_the_error_of_noisy_phantom_voxels(scheme):
    bvals, bvecs = scheme
    protocol = Protocol(bvals, bvecs)
    train = make_phantom(8, protocol, np.random.default_rng(0), snr=None)
    test = make_phantom(8, protocol, np.random.default_rng(1), snr=None)
    config = DenoiseConfig(epochs=10, copies=4, snrs=(10.0,))
    network, losses = train_denoiser(DenoiserSpec("sh", width=8), train.dwi[train.mask], bvals, bvecs, config)
    assert losses[-1] < losses[0]
    clean = test.dwi[test.mask].astype(np.float64)
    s0 = float(np.median(clean[:, bvals <= 50].mean(1)))
    noisy = add_rician_noise(clean, 10.0, s0, np.random.default_rng(2)).astype(np.float64)
    denoised = apply_denoiser(network, noisy, bvals)
    dw = bvals > 50
    before, after = (np.sqrt(np.mean((x[:, dw] - clean[:, dw]) ** 2)) for x in (noisy, denoised))
    assert after < 0.7 * before  # measured 0.38
    np.testing.assert_array_equal(denoised[:, ~dw], noisy[:, ~dw])  # b=0 volumes pass through
