"""SHDModel (default and angular super-resolution) and FODFFit, the dipy-style result."""

import numpy as np
import pytest
import torch
from dipy.core.gradients import gradient_table
from dipy.data import default_sphere, get_sphere
from dipy.sims.voxel import multi_tensor

from equidmri.dmri.response import TissueResponses
from equidmri.recon.checkpoint import load_checkpoint
from equidmri.recon.model import FODFFit, NetworkConfig, SHDModel
from equidmri.recon.train import TrainConfig
from equidmri.sphere.sh import sh_matrix

FIBRE = np.array([0.0, 0.6, 0.8])  # unit vector, voxel-axis frame


def _fit():
    """A 2x1x1 volume: a truncated delta along FIBRE (lmax 18) in voxel 0, nothing in voxel 1."""
    coeffs = sh_matrix(FIBRE[None], 18, "descoteaux07")[0]
    fodf_sh = np.stack([coeffs, np.zeros_like(coeffs)]).reshape(2, 1, 1, -1).astype(np.float32)
    mask = np.array([True, False]).reshape(2, 1, 1)
    return FODFFit(fodf_sh=fodf_sh, fractions=np.ones((2, 1, 1, 1), np.float32), tissues=("wm",), mask=mask)


def test_shm_coeff_is_the_lmax8_part_and_sh_truncates():
    fit = _fit()
    np.testing.assert_array_equal(fit.shm_coeff, fit.fodf_sh[..., :45])
    assert fit.sh(4).shape == (2, 1, 1, 15)


def test_odf_evaluates_the_sh_on_a_dipy_sphere():
    fit = _fit()
    expected = fit.fodf_sh[0, 0, 0] @ sh_matrix(default_sphere.vertices, 18, "descoteaux07").T
    np.testing.assert_allclose(fit.odf(default_sphere)[0, 0, 0], expected, rtol=1e-5, atol=1e-5)
    assert default_sphere.vertices[fit.odf(default_sphere)[0, 0, 0].argmax()] @ FIBRE > np.cos(np.radians(5))


def test_peaks_find_the_fibre_inside_the_mask_only():
    dirs, values = _fit().peaks()
    assert abs(dirs[0, 0, 0, 0] @ FIBRE) > np.cos(np.radians(3))
    assert values[0, 0, 0, 0] > 0 and np.all(dirs[1] == 0) and np.all(values[1] == 0)


EVALS = np.array([1.7e-3, 0.3e-3, 0.3e-3])  # mm²/s, FA 0.80
TINY_NET = NetworkConfig(widths=(4, 4, 4, 4))  # nside 8: the lmax-18 fODF fit needs >= 190 grid pixels
SHAPE = (3, 3, 2)  # voxels
N_LOW = 29  # directions of the low-resolution b=1000 subset (SHD paper §4.2.1)


def _series():
    """Noiseless single fibre along x: high resolution b=0 + 45 directions at b=1000 and at b=2000 s/mm²;
    low resolution = the b=0 and the first ``N_LOW`` b=1000 volumes of the same series."""
    dirs = get_sphere(name="repulsion100").vertices[:45]
    bvals = np.r_[0.0, np.full(45, 1000.0), np.full(45, 2000.0)]
    high = gradient_table(bvals, bvecs=np.vstack([np.zeros(3), dirs, dirs]))
    signal, _ = multi_tensor(high, EVALS[None], S0=100.0, angles=[(90, 0)], fractions=[100], snr=None)
    dwi = np.broadcast_to(signal, SHAPE + signal.shape).astype(np.float32).copy()
    low_index = np.arange(1 + N_LOW)
    low = gradient_table(bvals[low_index], bvecs=high.bvecs[low_index])
    responses = TissueResponses(
        tissues=("wm",), shells=[1000.0, 2000.0], evals=np.stack([EVALS, EVALS])[None], s0=[100.0]
    )
    return high, low, responses, dwi, dwi[..., low_index], np.ones(SHAPE, bool)


def _super_resolution(epochs=2):
    high, low, responses, dwi, dwi_low, mask = _series()
    with pytest.warns(UserWarning, match="SH degree lowered"):  # 29 directions support lmax 6, not 8
        model = SHDModel(high, responses, TINY_NET, TrainConfig(epochs=epochs, patch_size=3, seed=0), input_gtab=low)
    return model, dwi, dwi_low, mask


def test_super_resolution_reads_the_input_and_reconstructs_the_target():
    model, _, _, _ = _super_resolution()
    assert model.super_resolution
    assert model.sampler.operator.shape[-1] == 1 + N_LOW and model.sampler.n_channels == 2  # b=0 + one shell
    assert model.signal_model.wm_operator.shape[0] == 91  # b=0 + 2 x 45 target volumes


def test_super_resolution_loss_is_the_error_on_the_high_resolution_target():
    model, dwi, dwi_low, mask = _super_resolution(epochs=1)  # one step, its patch covers the whole volume
    inputs, target = model._prepare(dwi, mask, model.responses.s0[0], dwi_low)
    assert target.shape == SHAPE + (91,)
    model.net.train()  # as in the first training step: fresh weights, batch statistics
    with torch.no_grad():
        x = inputs[(slice(None),) * 4][None]  # the whole volume
        fodf, iso = model.signal_model.complete(*model.net(x), b0=x[:, 0, ..., 0], signal=target[None])
        expected = (model.signal_model(fodf, iso)[0] - target).square().mean().item()
    fit = model.fit(dwi, mask, input_dwi=dwi_low)
    assert fit.history[0]["recon"] == pytest.approx(expected, rel=1e-5)


def test_super_resolution_training_lowers_the_high_resolution_loss(tmp_path):
    model, dwi, dwi_low, mask = _super_resolution(epochs=4)
    fit = model.fit(dwi, mask, input_dwi=dwi_low, checkpoint_path=tmp_path / "model.pt")
    losses = [h["total"] for h in fit.history]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert fit.fodf_sh.shape == SHAPE + (45,) and np.all(np.isfinite(fit.fodf_sh))  # refined: lmax 8


def test_super_resolution_checkpoint_rebuilds_the_target_and_predicts_low_resolution_volumes(tmp_path):
    model, dwi, dwi_low, mask = _super_resolution()
    fit = model.fit(dwi, mask, input_dwi=dwi_low, checkpoint_path=tmp_path / "model.pt")
    meta = load_checkpoint(tmp_path / "model.pt")["meta"]
    assert meta["shells"] == [1000.0, 2000.0] and meta["input_shells"] == [1000.0]
    assert len(meta["target_gradients"]["bvals"]) == 91
    with pytest.warns(UserWarning, match="SH degree lowered"):
        loaded = SHDModel.from_checkpoint(tmp_path / "model.pt", model.input_gtab)
    np.testing.assert_array_equal(loaded.gtab.bvals, model.gtab.bvals)
    np.testing.assert_allclose(loaded.gtab.bvecs, model.gtab.bvecs, atol=1e-12)
    predicted = loaded.predict(dwi_low, mask)
    assert predicted.fodf_sh.shape == SHAPE + (45,) and predicted.fractions.shape == SHAPE + (1,)
    np.testing.assert_allclose(predicted.fodf_sh, fit.fodf_sh, rtol=0, atol=1e-5)


def test_default_model_reads_and_reconstructs_one_acquisition():
    high, _, responses, dwi, _, mask = _series()
    model = SHDModel(high, responses, TINY_NET, TrainConfig(epochs=1, patch_size=3))
    assert not model.super_resolution and model.input_gtab is high
    assert model.sampler.operator.shape[-1] == model.signal_model.wm_operator.shape[0] == 91
    assert "target_gradients" not in model.checkpoint_meta()
    assert model.checkpoint_meta()["input_shells"] == model.checkpoint_meta()["shells"]


def test_super_resolution_rejects_mismatched_volumes():
    model, dwi, dwi_low, mask = _super_resolution()
    with pytest.raises(ValueError, match=r"input_dwi must be \(X, Y, Z, 30\).*got \(3, 3, 2, 91\)"):
        model.fit(dwi, mask)  # the high-resolution series is not a valid input
    with pytest.raises(ValueError, match=r"dwi must be \(X, Y, Z, 91\).*got \(3, 3, 2, 30\)"):
        model.fit(dwi_low, mask, input_dwi=dwi_low)
    with pytest.raises(ValueError, match=r"input_dwi has spatial shape \(3, 3, 1\), dwi \(3, 3, 2\)"):
        model.fit(dwi, mask, input_dwi=dwi_low[:, :, :1])
    with pytest.raises(ValueError, match=r"dwi must be \(X, Y, Z, 30\)"):
        model.predict(dwi, mask)


def test_acquisitions_without_b0_are_refused():
    high, low, responses, _, _, _ = _series()
    no_b0 = gradient_table(np.full(N_LOW, 1000.0), bvecs=low.bvecs[1:])
    with pytest.raises(ValueError, match="input_gtab has no b=0 volume"):
        SHDModel(high, responses, TINY_NET, input_gtab=no_b0)
    high_no_b0 = gradient_table(high.bvals[1:], bvecs=high.bvecs[1:])
    with pytest.raises(ValueError, match="gtab has no b=0 volume"):
        SHDModel(high_no_b0, responses, TINY_NET, input_gtab=low)


def test_train_network_trains_as_fit_does_without_the_final_deconvolution():
    model, dwi, dwi_low, mask = _super_resolution(epochs=2)
    history = model.train_network(dwi, mask, input_dwi=dwi_low)
    refit, _, _, _ = _super_resolution(epochs=2)
    fit = refit.fit(dwi, mask, input_dwi=dwi_low)
    assert history == fit.history  # same seed, same steps
    fodf = model.predict(dwi_low, mask).fodf_sh
    np.testing.assert_allclose(fodf, fit.fodf_sh, atol=1e-6)  # the same trained network


def test_network_config_fractions_and_older_checkpoints():
    assert NetworkConfig().fraction_mode(3) == "nnls" and NetworkConfig().fraction_mode(1) == "b0"
    assert NetworkConfig(fractions="network").fraction_mode(3) == "network"
    legacy = {**NetworkConfig().to_dict(), "model": "shd-tv"}
    del legacy["fractions"]
    assert NetworkConfig.from_dict({**legacy, "match_b0": True}).fractions == "b0"  # before fractions existed
    assert NetworkConfig.from_dict({**legacy, "match_b0": False}).fractions == "network"
    assert NetworkConfig.from_dict({**legacy, "match_b0": False}).model == "shd"
    assert NetworkConfig.from_dict(NetworkConfig().to_dict()) == NetworkConfig()
    with pytest.raises(ValueError, match="fractions must be"):
        NetworkConfig(fractions="softmax")
