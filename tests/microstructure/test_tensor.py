"""Tensor <-> 6-signal round trip, ADC sampling on the HEALPix hemisphere, simulation."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from equidmri.microstructure.schemes import JONES, SKARE
from equidmri.microstructure.simulate import (
    eigenvalues_from_fa,
    rotate_to_ap,
    sample_tensors,
    simulate_acquisition,
)
from equidmri.microstructure.tensor import (
    ADC_SCALE,
    adc_profile,
    fit_tensors,
    scheme_gtab,
    tensor_fa,
    tensor_signals,
)
from equidmri.sphere.hemisphere import hemisphere_centres


@pytest.fixture(scope="module")
def tensors():
    return sample_tensors(500, np.random.default_rng(1))


@pytest.mark.parametrize("scheme", [SKARE, JONES])
def test_six_signals_determine_the_tensor_exactly(tensors, scheme):
    gtab = scheme_gtab(scheme)
    signals = tensor_signals(tensors, gtab, s0=300.0)
    assert signals.shape == (500, 7)
    np.testing.assert_allclose(signals[:, 0], 300.0)
    fitted = fit_tensors(signals, gtab)
    np.testing.assert_allclose(fitted, tensors, atol=1e-12)
    np.testing.assert_allclose(tensor_signals(fitted, gtab, s0=300.0), signals, rtol=1e-9)


def test_adc_profile_samples_gTDg_on_the_hemisphere_centres():
    tensor = np.diag([1.7e-3, 0.3e-3, 0.2e-3])
    profile = adc_profile(tensor, nside=4)
    centres = hemisphere_centres(4)
    assert profile.shape == (96,) and profile.dtype == np.float32
    np.testing.assert_allclose(profile, ADC_SCALE * (centres**2 @ [1.7e-3, 0.3e-3, 0.2e-3]), rtol=1e-6)
    assert profile.max() <= 1.7 and profile.min() >= 0.2  # between the extreme eigenvalues, µm²/ms
    rotation = Rotation.random(random_state=0).as_matrix()
    rotated = adc_profile(rotation @ tensor @ rotation.T, nside=4)
    np.testing.assert_allclose(
        rotated, ADC_SCALE * np.einsum("vi,ij,vj->v", centres @ rotation, tensor, centres @ rotation), rtol=1e-5
    )


def test_eigenvalues_have_the_requested_fa_and_md():
    fa, md = np.array([0.0, 0.3, 0.7, 0.95]), np.array([3e-3, 0.8e-3, 0.7e-3, 0.75e-3])
    evals = eigenvalues_from_fa(fa, md, np.array([0.0, 0.2, 0.5, 0.0]))
    np.testing.assert_allclose(evals.mean(axis=1), md, rtol=1e-12)
    np.testing.assert_allclose(tensor_fa(np.apply_along_axis(np.diag, 1, evals)), fa, atol=1e-12)


def test_sampled_tensors_cover_every_fa_bin_and_ap_restriction(tensors):
    fa = tensor_fa(tensors)
    counts = np.histogram(fa, bins=[0, 0.2, 0.4, 0.6, 0.8, 1.0])[0]
    assert np.all(counts >= 20), counts
    assert np.all(np.linalg.eigvalsh(tensors) > 0)
    ap = rotate_to_ap(tensors)
    np.testing.assert_allclose(tensor_fa(ap), fa, atol=1e-12)
    principal = np.linalg.eigh(ap)[1][:, :, -1]
    assert np.abs(np.abs(principal[fa > 0.05]) - [0.0, 1.0, 0.0]).max() < 1e-6


def test_rician_noise_at_the_requested_snr(tensors):
    gtab = scheme_gtab(SKARE)
    voxels = simulate_acquisition(np.repeat(tensors[:1], 20000, axis=0), gtab, np.random.default_rng(0), snr=20)
    clean = tensor_signals(tensors[0], gtab)
    assert voxels.signals[:, 0].std() == pytest.approx(1 / 20, rel=0.05)  # Rician ≈ Gaussian at high SNR
    assert np.all(voxels.signals.mean(axis=0) >= clean - 0.003)  # Rician bias is upward
