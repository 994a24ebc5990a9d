"""Synthetic voxels in the four modes: valid signals and ground truth, the modes' sources, reproducibility."""

import numpy as np
import pytest
from scipy.stats import ks_2samp

from equidmri.data import load_real_volume
from equidmri.synth import MODES, calibrate, synthesize

N_VOXELS = 2000


@pytest.fixture(scope="module")
def stats_64d():
    return calibrate(load_real_volume("small_64D"))


@pytest.fixture(scope="module")
def stats_101d():
    return calibrate(load_real_volume("small_101D"))


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_gives_valid_signals_and_ground_truth(stats_101d, mode):
    v = synthesize(stats_101d, mode, N_VOXELS, np.random.default_rng(0))
    n, s = stats_101d.bvals.size, stats_101d.shells.bvals.size
    assert v.signals.shape == v.signals_clean.shape == (N_VOXELS, n) and v.signals.dtype == np.float32
    b0 = v.shell_index < 0
    np.testing.assert_allclose(v.signals[:, b0].mean(1), 1.0, rtol=1e-6)  # normalised by the mean noisy b=0
    assert np.all(np.isfinite(v.signals)) and v.signals.min() >= 0.0
    assert np.percentile(v.signals[:, ~b0], 99.9) <= 1.2
    assert v.signals_clean.min() >= 0.0 and v.signals_clean.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(v.tissue_fractions.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(v.fibre_fractions.sum(1), v.tissue_fractions[:, 0], atol=1e-12)
    present = np.isfinite(v.fibre_dirs[..., 0])
    np.testing.assert_array_equal(present.sum(1), v.n_fibres)
    assert set(np.unique(v.n_fibres)) == {1, 2, 3}
    np.testing.assert_allclose(np.linalg.norm(v.fibre_dirs[present], axis=-1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(v.fibre_fractions[~present], 0.0)
    evals = v.fibre_evals[present]  # (F, S, 2)
    assert evals.shape[1:] == (s, 2) and np.all(np.isnan(v.fibre_evals[~present]))
    assert np.all(evals > 0) and np.all(evals[..., 1] <= evals[..., 0])
    assert v.gm_md.shape == v.csf_md.shape == (N_VOXELS, s)


def test_without_noise_the_normalised_signal_is_the_clean_signal(stats_64d):
    v = synthesize(stats_64d, "syn", 100, np.random.default_rng(0), snr=np.inf)
    np.testing.assert_array_equal(v.signals, v.signals_clean)


def test_noise_has_the_subjects_snr(stats_64d):
    snr = 20.0
    v = synthesize(stats_64d, "sample-mean", N_VOXELS, np.random.default_rng(0), snr=snr)
    clean = v.signals_clean[:, v.shell_index >= 0]
    bright = clean > 0.3  # Rician ≈ Gaussian there; the b=0 normalisation scales the noise by about 1
    noise = (v.signals[:, v.shell_index >= 0] - clean)[bright]
    assert noise.std() == pytest.approx(1.0 / snr, rel=0.15)
    assert synthesize(stats_64d, "syn", 10, np.random.default_rng(0)).snr == pytest.approx(stats_64d.snr)


def test_sample_modes_draw_calibrated_tensors_and_syn_draws_new_ones(stats_101d):
    calibrated = {tuple(row) for row in np.stack([stats_101d.wm_lambda_par, stats_101d.wm_lambda_perp], -1).reshape(
        stats_101d.wm_lambda_par.shape[0], -1)}  # fmt: skip
    for mode in ("sample-mean", "sample"):
        v = synthesize(stats_101d, mode, 300, np.random.default_rng(1))
        drawn = v.fibre_evals[np.isfinite(v.fibre_evals[..., 0, 0])].reshape(-1, 2 * stats_101d.shells.bvals.size)
        assert all(tuple(row) in calibrated for row in drawn)
    v = synthesize(stats_101d, "syn", 300, np.random.default_rng(1))
    drawn = v.fibre_evals[np.isfinite(v.fibre_evals[..., 0, 0])].reshape(-1, 2 * stats_101d.shells.bvals.size)
    assert not any(tuple(row) in calibrated for row in drawn)


def test_gm_and_csf_are_means_except_in_sample_mode(stats_64d):
    for mode in ("syn", "sample-mean", "random-wm"):
        v = synthesize(stats_64d, mode, 200, np.random.default_rng(2))
        np.testing.assert_allclose(v.gm_md, stats_64d.gm_md.mean(0)[None].repeat(200, 0))
        np.testing.assert_allclose(v.csf_md, stats_64d.csf_md.mean(0)[None].repeat(200, 0))
    v = synthesize(stats_64d, "sample", 200, np.random.default_rng(2))
    assert np.isin(v.gm_md[:, 0], stats_64d.gm_md[:, 0]).all() and np.unique(v.gm_md).size > 5
    assert np.isin(v.csf_md[:, 0], stats_64d.csf_md[:, 0]).all() and np.unique(v.csf_md).size > 5


def _first_fibre_lambda_par(v):
    return v.fibre_evals[:, 0, 0, 0]  # every voxel has a first fibre


def test_random_wm_differs_from_the_subjects_statistics(stats_64d):
    rng = np.random.default_rng
    syn = _first_fibre_lambda_par(synthesize(stats_64d, "syn", N_VOXELS, rng(3)))
    sampled = _first_fibre_lambda_par(synthesize(stats_64d, "sample-mean", N_VOXELS, rng(4)))
    random = _first_fibre_lambda_par(synthesize(stats_64d, "random-wm", N_VOXELS, rng(5)))
    near, far = ks_2samp(syn, sampled), ks_2samp(syn, random)
    assert far.pvalue < 1e-10 and far.statistic > 2 * near.statistic
    assert np.median(syn) == pytest.approx(np.median(stats_64d.wm_lambda_par), rel=0.1)


def test_per_shell_tensors_keep_the_b_dependence_that_random_wm_lacks(stats_101d):
    sampled = synthesize(stats_101d, "sample-mean", 500, np.random.default_rng(6)).fibre_evals[:, 0, :, 0]
    random = synthesize(stats_101d, "random-wm", 500, np.random.default_rng(6)).fibre_evals[:, 0, :, 0]
    assert np.median(sampled[:, -1] / sampled[:, 0]) < 0.8  # apparent λ∥ falls with b (kurtosis)
    np.testing.assert_array_equal(random[:, -1], random[:, 0])


def test_the_same_seed_gives_the_same_voxels(stats_64d):
    first = synthesize(stats_64d, "syn", 300, np.random.default_rng(7)).arrays()
    second = synthesize(stats_64d, "syn", 300, np.random.default_rng(7)).arrays()
    other = synthesize(stats_64d, "syn", 300, np.random.default_rng(8)).arrays()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    assert not np.array_equal(first["signals"], other["signals"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "randomwm"}, "mode must be one of"),
        ({"n_voxels": 0}, "n_voxels must be an integer >= 1"),
        ({"n_voxels": 2.5}, "n_voxels must be an integer >= 1"),
        ({"snr": 0.0}, "snr must be > 0"),
    ],
)
def test_synthesize_refuses_bad_arguments(stats_64d, kwargs, message):
    arguments = {"mode": "syn", "n_voxels": 10, **kwargs}
    snr = arguments.pop("snr", None)
    with pytest.raises(ValueError, match=message):
        synthesize(stats_64d, arguments["mode"], arguments["n_voxels"], np.random.default_rng(0), snr=snr)
