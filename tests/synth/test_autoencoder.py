"""The self-adaptive autoencoder, its training on synthetic voxels and the reconstruction errors that judge it."""

import numpy as np
import pytest
import torch

from equidmri.data import load_real_volume
from equidmri.dmri.gradients import make_gtab
from equidmri.sims.synthesis import Protocol, fibre_signal, make_protocol
from equidmri.synth import (
    AutoencoderConfig,
    SelfAdaptiveAutoencoder,
    autoencoder_widths,
    calibrate,
    reconstruct,
    reconstruction_errors,
    synthesize,
    train_autoencoder,
)

SNR = 20.0  # the noise of the training and held-out voxels (the b=0 normalisation adds a scale error)
QUICK = AutoencoderConfig(epochs=30, batch_size=32, lr=3e-3)  # converges in about a second here


@pytest.mark.parametrize(("n", "widths"), [(65, (65, 33, 17, 33, 65)), (26, (26, 13, 7, 13, 26)), (7, (7, 6, 6, 6, 7))])
def test_widths_follow_the_number_of_volumes(n, widths):
    assert autoencoder_widths(n) == widths
    net = SelfAdaptiveAutoencoder(n)
    assert net.encode(torch.zeros(4, n)).shape == (4, widths[2])
    assert net(torch.zeros(4, n)).shape == (4, n)


def test_autoencoder_state_dict_round_trip_and_double():
    net = SelfAdaptiveAutoencoder(20)
    other = SelfAdaptiveAutoencoder(20)
    other.load_state_dict(net.state_dict())
    x = torch.rand(3, 20)
    torch.testing.assert_close(other(x), net(x), rtol=0, atol=0)
    assert net.double()(x.double()).dtype == torch.float64


def test_autoencoder_refuses_bad_sizes():
    with pytest.raises(ValueError, match="n_volumes must be an integer >= 1"):
        SelfAdaptiveAutoencoder(0)
    with pytest.raises(ValueError, match=r"expected signals \(\.\.\., 20\)"):
        SelfAdaptiveAutoencoder(20)(torch.zeros(2, 19))


@pytest.fixture(scope="module")
def trained():
    stats = calibrate(load_real_volume("small_64D"))
    train = synthesize(stats, "sample-mean", 1500, np.random.default_rng(0), snr=SNR)
    held_out = synthesize(stats, "sample-mean", 500, np.random.default_rng(1), snr=SNR)
    return stats, train, held_out, *train_autoencoder(train.signals, QUICK)


def test_training_on_synthetic_voxels_learns_to_denoise_unseen_ones(trained):
    _, _, held_out, network, losses = trained
    assert losses[-1] < 0.2 * losses[0]
    rebuilt = reconstruct(network, held_out.signals)
    dw = held_out.shell_index >= 0
    error = np.abs(rebuilt[:, dw] - held_out.signals_clean[:, dw]).mean()
    noise = np.abs(held_out.signals[:, dw] - held_out.signals_clean[:, dw]).mean()
    assert error < 0.75 * noise  # the code keeps the signal and drops much of the noise (measured 0.58)


def test_training_is_reproducible_and_leaves_the_global_seed_alone(trained):
    signals = trained[1].signals[:200]
    config = AutoencoderConfig(epochs=3, batch_size=50)
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    first, losses = train_autoencoder(signals, config)
    assert torch.rand(1) == expected
    second, losses_again = train_autoencoder(signals, config)
    assert losses_again == losses
    x = torch.as_tensor(signals[:5])
    torch.testing.assert_close(second(x), first(x), rtol=0, atol=0)


def test_reconstruct_refuses_another_acquisition(trained):
    network = trained[3]
    with pytest.raises(ValueError, match=r"signals must have shape \(M, 65\)"):
        reconstruct(network, np.zeros((2, 64)))


def _single_fibre(protocol, direction):
    evals = np.array([[[1.7e-3, 0.3e-3]]])
    return fibre_signal(protocol, direction[None, None], np.ones((1, 1)), evals, np.zeros(1), np.zeros(1), 1.0)


def test_reconstruction_errors_measure_fa_and_direction():
    protocol = make_protocol(np.random.default_rng(0), n_b0=1, shells=(1000.0,), directions_per_shell=30)
    gtab = make_gtab(protocol.bvals, protocol.bvecs)
    angle = np.radians(30.0)
    original = _single_fibre(protocol, np.array([1.0, 0.0, 0.0]))
    turned = _single_fibre(protocol, np.array([np.cos(angle), np.sin(angle), 0.0]))
    same = reconstruction_errors(original, original, gtab)
    assert same == {
        "signal_mae": 0.0,
        "fa_mae": 0.0,
        "direction_error_deg_mean": 0.0,
        "direction_error_deg_median": 0.0,
    }
    errors = reconstruction_errors(turned, original, gtab)
    assert errors["direction_error_deg_mean"] == pytest.approx(30.0, abs=0.01)
    assert errors["fa_mae"] < 1e-6 and errors["signal_mae"] > 0.01
    iso = Protocol(protocol.bvals, protocol.bvecs)
    flat = fibre_signal(iso, np.zeros((1, 1, 3)), np.zeros((1, 1)), np.zeros((1, 1, 2)), np.ones(1), np.zeros(1), 1.0)
    assert reconstruction_errors(flat, original, gtab)["fa_mae"] == pytest.approx(0.7990, abs=1e-3)  # FA of the fibre


def test_reconstruction_errors_refuse_mismatched_shapes():
    gtab = make_gtab(np.array([0.0, 1000.0]), np.array([[0, 0, 0], [1.0, 0, 0]]))
    with pytest.raises(ValueError, match="must both be"):
        reconstruction_errors(np.zeros((2, 2)), np.zeros((3, 2)), gtab)
