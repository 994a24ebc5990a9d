"""Tests of the lesion Model/Fit pair, its loss and its model files."""

import numpy as np
import pytest
import torch

from equidmri.dmri.gradients import make_gtab
from equidmri.lesions import (
    LesionModel,
    lesion_loss,
    load_lesion_model,
    network_input,
    parameter_count,
    save_lesion_model,
)
from equidmri.lesions.model import matching_cnn_width
from equidmri.lesions.model_file import MODEL_KIND
from equidmri.nn.models.lesion_cnn import DWICNN
from equidmri.recon.checkpoint import save_checkpoint
from equidmri.sims.lesion_set import make_lesion_splits

TINY_PQ = {"pq_irreps": ("2x0e + 1x1o",), "p_irreps": ()}


@pytest.fixture(scope="module")
def splits():
    return make_lesion_splits("phantom", (2, 1, 1), size=8, seed=1)


@pytest.fixture(scope="module")
def fits(splits):
    first = splits["train"][0]
    return {
        "pq": LesionModel("pq", first.bvals, first.bvecs, **TINY_PQ).fit(splits["train"], splits["val"], epochs=2),
        "cnn": LesionModel("cnn", first.bvals, first.bvecs, width=2).fit(splits["train"], epochs=2),
    }


@pytest.mark.parametrize("network", ["pq", "cnn"])
def test_predict_gives_probabilities_in_the_grid_and_zero_outside_the_mask(fits, splits, network):
    volume = splits["test"][0]
    probability = fits[network].predict(volume.dwi, make_gtab(volume.bvals, volume.bvecs), volume.mask)
    assert probability.shape == volume.mask.shape and probability.dtype == np.float32
    assert (probability[~volume.mask] == 0).all() and probability[volume.mask].min() > 0
    assert probability.max() < 1 and probability[volume.mask].std() > 0


def test_training_records_one_loss_per_epoch_and_keeps_the_best_validation_epoch(fits):
    history = fits["pq"].history
    assert len(history["train"]) == len(history["val"]) == 2
    assert history["best_epoch"] == 1 + int(np.argmin(history["val"]))
    assert history["learning_rate"] == 3e-2 and fits["cnn"].history["learning_rate"] == 1e-2


def test_the_cnn_width_matches_the_pq_parameter_count_best(splits):
    first = splits["train"][0]
    pq = parameter_count(LesionModel("pq", first.bvals, first.bvecs, **TINY_PQ).build())
    width = matching_cnn_width(first.bvals, first.bvecs, TINY_PQ)
    counts = {w: parameter_count(DWICNN(len(first.bvals), width=w)) for w in range(1, width + 3)}
    assert min(counts, key=lambda w: abs(counts[w] - pq)) == width
    assert LesionModel("cnn", first.bvals, first.bvecs, width=3).options == {"width": 3}


def test_model_files_round_trip_and_refuse_other_checkpoints(fits, splits, tmp_path):
    volume = splits["test"][0]
    gtab = make_gtab(volume.bvals, volume.bvecs)
    for network, fit in fits.items():
        path = save_lesion_model(tmp_path / f"{network}.pt", fit)
        loaded = load_lesion_model(path)
        assert loaded.network == network and loaded.options == fit.options
        np.testing.assert_array_equal(
            loaded.predict(volume.dwi, gtab, volume.mask), fit.predict(volume.dwi, gtab, volume.mask)
        )
    save_checkpoint(tmp_path / "other.pt", {"meta": {"kind": "equidmri-harmonizer"}, "state_dict": {}})
    with pytest.raises(ValueError, match="not a lesion model"):
        load_lesion_model(tmp_path / "other.pt")
    older = {"meta": {"kind": MODEL_KIND, "network": "pq"}, "state_dict": {}}  # no version: the scan-centred input
    save_checkpoint(tmp_path / "older.pt", older)
    with pytest.raises(ValueError, match="older equidmri"):
        load_lesion_model(tmp_path / "older.pt")


def test_lesion_loss_is_bce_inside_the_mask_plus_the_dice_term():
    logits = torch.tensor([[[[4.0, -4.0, 9.0]]]])
    labels = torch.tensor([[[[1.0, 0.0, 0.0]]]])
    mask = torch.tensor([[[[True, True, False]]]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], labels[mask])
    torch.testing.assert_close(lesion_loss(logits, labels, mask), bce)
    assert lesion_loss(logits, labels, mask, dice_weight=1.0) > bce


def test_network_input_is_centred_per_shell_with_unit_spread_and_refuses_bad_shapes():
    bvals = np.array([0.0, 1000.0, 1000.0, 2000.0])
    rng = np.random.default_rng(0)
    dwi = rng.uniform(0.5, 1.0, (3, 3, 3, 4)) * np.array([200.0, 100.0, 90.0, 50.0])
    mask = np.ones((3, 3, 3), bool)
    mask[1, 1, 1] = False
    x = network_input(dwi, bvals, mask)
    assert x.shape == (1, 4, 3, 3, 3)
    inside = x[0][:, torch.from_numpy(mask)].numpy()  # (N, M)
    for volumes in ([0], [1, 2], [3]):  # b=0, then each shell: median over its voxels and directions is 0
        assert np.median(inside[volumes]) == pytest.approx(0.0, abs=1e-6)
    assert inside.std() == pytest.approx(1.0, rel=1e-5)
    assert (x[..., 1, 1, 1] == 0).all()
    # one number per scan divides the signal first: a brighter b=0 in a voxel raises its value on the b=0 volume
    brighter = dwi.copy()
    brighter[0, 0, 0, 0] *= 2
    assert network_input(brighter, bvals, mask)[0, 0, 0, 0, 0] > x[0, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="disagree"):
        network_input(dwi, np.array([0.0, 1000.0]), mask)
    with pytest.raises(ValueError, match="network must be"):
        LesionModel("unet", np.zeros(3), np.zeros((3, 3)))
