"""Training loop: seed determinism, resume after interruption, divergence handling."""

import numpy as np
import pytest
import torch
from dipy.core.gradients import gradient_table
from dipy.data import get_sphere
from dipy.sims.voxel import multi_tensor

from equidmri.dmri.response import TissueResponses
from equidmri.recon.checkpoint import load_checkpoint
from equidmri.recon.losses import LossWeights
from equidmri.recon.model import NetworkConfig, SHDModel
from equidmri.recon.train import TrainConfig, TrainingDivergedError, sample_patches

EVALS = np.array([1.7e-3, 0.3e-3, 0.3e-3])  # mm²/s, FA 0.80
TINY_NET = NetworkConfig(widths=(4, 4, 4, 4))


def _phantom(shape=(4, 4, 3)):
    """Single-fibre voxels along x, b=1000 s/mm², 1 b0 + 40 directions, noiseless."""
    dirs = get_sphere(name="repulsion100").vertices[:40]
    bvals = np.r_[0.0, np.full(40, 1000.0)]
    bvecs = np.vstack([np.zeros(3), dirs])
    gtab = gradient_table(bvals, bvecs=bvecs)
    signal, _ = multi_tensor(gtab, EVALS[None], S0=100.0, angles=[(90, 0)], fractions=[100], snr=None)
    dwi = np.broadcast_to(signal, shape + signal.shape).astype(np.float32).copy()
    responses = TissueResponses(tissues=("wm",), shells=[1000.0], evals=EVALS[None, None], s0=[100.0])
    return gtab, responses, dwi, np.ones(shape, bool)


def _fit(tmp_path, epochs, **kwargs):
    gtab, responses, dwi, mask = _phantom()
    model = SHDModel(gtab, responses, TINY_NET, TrainConfig(epochs=epochs, checkpoint_every=1, seed=3))
    return model, model.fit(dwi, mask, checkpoint_path=tmp_path / "model.pt", **kwargs)


def test_same_seed_gives_identical_fodfs(tmp_path):
    _, first = _fit(tmp_path, 3)
    _, second = _fit(tmp_path, 3)
    np.testing.assert_array_equal(first.fodf_sh, second.fodf_sh)
    assert first.history == second.history


def test_different_seed_gives_different_fodfs(tmp_path):
    gtab, responses, dwi, mask = _phantom()
    fits = [SHDModel(gtab, responses, TINY_NET, TrainConfig(epochs=2, seed=s)).fit(dwi, mask) for s in (0, 1)]
    assert np.abs(fits[0].fodf_sh - fits[1].fodf_sh).max() > 1e-4


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    _, reference = _fit(tmp_path, 4)
    gtab, responses, dwi, mask = _phantom()
    checkpoint = tmp_path / "b.pt"

    def interrupt(epoch, terms):
        if epoch == 2:
            raise KeyboardInterrupt

    model = SHDModel(gtab, responses, TINY_NET, TrainConfig(epochs=4, checkpoint_every=1, seed=3))
    from equidmri.recon import train as train_module

    inputs, target = model._prepare(dwi, mask, responses.s0[0])
    with pytest.raises(KeyboardInterrupt):
        train_module.train(
            model.net,
            model.signal_model,
            inputs,
            target,
            torch.from_numpy(mask),
            model.train_config,
            checkpoint_path=checkpoint,
            progress=False,
            callback=interrupt,
        )
    assert load_checkpoint(checkpoint)["epoch"] == 2
    resumed = SHDModel(gtab, responses, TINY_NET, TrainConfig(epochs=4, checkpoint_every=1, seed=3))
    fit = resumed.fit(dwi, mask, checkpoint_path=checkpoint, resume=True)
    assert len(fit.history) == 4
    np.testing.assert_allclose(fit.fodf_sh, reference.fodf_sh, rtol=0, atol=1e-6)


def test_checkpoint_records_configuration_responses_and_version(tmp_path):
    model, _ = _fit(tmp_path, 1)
    meta = load_checkpoint(tmp_path / "model.pt")["meta"]
    assert meta["network"] == TINY_NET.to_dict()
    assert meta["train"]["epochs"] == 1
    assert TissueResponses.from_dict(meta["responses"]).s0[0] == 100.0
    assert meta["version"]


def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(tmp_path):
    gtab, responses, dwi, mask = _phantom()
    bad = SHDModel(gtab, responses, TINY_NET, TrainConfig(epochs=3, checkpoint_every=1, lr=1e30))
    with pytest.raises(TrainingDivergedError, match="non-finite.*last good checkpoint"):
        bad.fit(dwi, mask, checkpoint_path=tmp_path / "model.pt")
    kept = load_checkpoint(tmp_path / "model.pt")
    assert kept["epoch"] >= 1
    assert all(torch.isfinite(v).all() for v in kept["state_dict"].values() if v.is_floating_point())


def test_patches_are_centred_on_mask_voxels_and_clipped_to_the_volume():
    mask = torch.zeros(10, 8, 6, dtype=torch.bool)
    mask[9, 7, 5] = True
    (patch,) = sample_patches(mask, 4, 1, torch.Generator().manual_seed(0))
    assert [(s.start, s.stop) for s in patch] == [(6, 10), (4, 8), (2, 6)]


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        TrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="loss weight tv must be >= 0"):
        LossWeights(tv=-1.0)


@pytest.mark.parametrize("name", ("esd", "concat-esd", "cnn", "mlp"))
def test_baselines_train_and_deconvolve_through_the_same_model(name):
    gtab, responses, dwi, mask = _phantom()
    network = NetworkConfig(model=name, widths=(4, 4, 4, 4))
    fit = SHDModel(gtab, responses, network, TrainConfig(epochs=2, seed=0)).fit(dwi, mask)
    assert len(fit.history) == 2 and all(np.isfinite(h["total"]) for h in fit.history)
    assert fit.fodf_sh.shape == (4, 4, 3, 45) and np.all(np.isfinite(fit.fodf_sh))
