"""Tests of the synthetic lesion generator: labels are exactly the changed voxels, lesions raise MD and b=0."""

import numpy as np
import pytest
import torch

from equidmri.dmri.gradients import make_gtab
from equidmri.eval.equivariance import rotate_voxels
from equidmri.microstructure.tensor import fit_tensors
from equidmri.sims.lesion_set import make_lesion_splits
from equidmri.sims.lesions import (
    LESION_T2_GAIN,
    insert_lesions,
    lesion_protocol,
    phantom_lesion_volume,
    random_lesion_labels,
    tilt_rotation,
)
from equidmri.sims.phantoms import make_phantom


@pytest.fixture(scope="module")
def protocol():
    return lesion_protocol()


def test_labels_are_exactly_the_voxels_whose_signal_changed(protocol):
    volume = phantom_lesion_volume(10, protocol, seed=3, snr=None)
    phantom = make_phantom(10, protocol, np.random.default_rng(3), snr=None)  # the same seed: the same background
    changed = np.abs(volume.dwi - phantom.dwi).max(-1) > 1e-3
    assert volume.labels.sum() > 0
    np.testing.assert_array_equal(changed, volume.labels)
    assert volume.labels.sum() == sum(lesion["voxels"] for lesion in volume.description["lesions"])


def test_lesion_voxels_have_raised_md_a_t2_bright_b0_and_less_signal_in_every_direction(protocol):
    volume = phantom_lesion_volume(10, protocol, seed=4, snr=None)
    phantom = make_phantom(10, protocol, np.random.default_rng(4), snr=None)
    inside = volume.labels
    b0 = protocol.bvals == 0
    gain = volume.dwi[inside][:, b0].mean(-1) / phantom.dwi[inside][:, b0].mean(-1)
    assert gain.min() >= LESION_T2_GAIN[0] - 1e-4 and gain.max() <= LESION_T2_GAIN[1] + 1e-4
    attenuation = lambda dwi: dwi[inside][:, ~b0] / dwi[inside][:, b0].mean(-1, keepdims=True)  # noqa: E731
    assert (attenuation(volume.dwi) < attenuation(phantom.dwi)).all()
    gtab = make_gtab(protocol.bvals, protocol.bvecs)
    md = lambda dwi: np.trace(fit_tensors(dwi[inside], gtab), axis1=-2, axis2=-1) / 3  # noqa: E731
    assert (md(volume.dwi) > md(phantom.dwi)).all()


def test_a_tilted_subject_has_the_rotated_labels_and_the_same_b_vectors(protocol):
    rotation = tilt_rotation(np.random.default_rng(0))
    upright = phantom_lesion_volume(10, protocol, seed=5, snr=20.0)
    tilted = phantom_lesion_volume(10, protocol, seed=5, snr=20.0, tilt=rotation)
    rotated = rotate_voxels(torch.from_numpy(upright.labels), rotation, 0).numpy()
    np.testing.assert_array_equal(tilted.labels, rotated)
    np.testing.assert_array_equal(tilted.bvecs, upright.bvecs)
    assert not np.array_equal(tilted.labels, upright.labels)


def test_lesions_are_cut_to_the_mask_and_centred_on_candidates():
    shape = (8, 8, 8)
    mask = np.zeros(shape, bool)
    mask[2:6, 2:6, 2:6] = True
    candidates = np.zeros(shape, bool)
    candidates[4, 4, 4] = True
    index, lesions = random_lesion_labels(shape, candidates, mask, np.random.default_rng(1))
    assert index[~mask].max() == 0 and index[4, 4, 4] == 1
    assert all(lesion["centre_voxel"] == [4.0, 4.0, 4.0] for lesion in lesions)
    with pytest.raises(ValueError, match="no white-matter voxel"):
        random_lesion_labels(shape, np.zeros(shape, bool), mask, np.random.default_rng(1))


def test_insert_lesions_follows_the_mixing_formula():
    bvals = np.array([0.0, 1000.0])
    dwi = np.full((1, 1, 1, 2), [100.0, 40.0])
    lesion = {"contrast": 0.5, "diffusivity_mm2_s": 2e-3, "t2_gain": 1.5}
    out = insert_lesions(dwi, bvals, np.ones((1, 1, 1), int), [lesion])
    expected = 1.5 * (0.5 * np.array([100.0, 40.0]) + 0.5 * 100.0 * np.exp(-bvals * 2e-3))
    np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-6)


def test_real_background_splits_differ_in_lesions_and_rotate_the_b_vectors():
    splits = make_lesion_splits("small_64D", (1, 1, 1), seed=0)
    train, test, tilted = splits["train"][0], splits["test"][0], splits["test_rotated"][0]
    assert train.dwi.shape == (10, 10, 10, 65) and train.labels.any() and test.labels.any()
    assert not np.array_equal(train.labels, test.labels)
    rotation = np.array(tilted.description["tilt"])
    np.testing.assert_allclose(tilted.bvecs, test.bvecs @ rotation.T)
    assert tilted.labels.sum() == test.labels.sum()


def test_splits_refuse_bad_settings():
    with pytest.raises(ValueError, match="background"):
        make_lesion_splits("mri", (1, 1, 1))
    with pytest.raises(ValueError, match="counts"):
        make_lesion_splits("phantom", (1, 0, 1))
    with pytest.raises(ValueError, match="SNR"):
        make_lesion_splits("phantom", (1, 1, 1), snrs=(0.0,))
