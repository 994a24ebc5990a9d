"""Training a voxel-wise denoiser on one acquisition's own voxels with added Rician noise, and applying it.

The measured signal of a voxel is the training target ("clean"); its input is the same signal with Rician noise
added at an SNR drawn from ``config.snrs`` (σ = ``s0 / snr`` per real and imaginary channel, dipy ``add_noise``, with
``s0`` the median b=0 signal of the training voxels). Both are divided by the mean b=0 of the *noisy* voxel (what is
known at inference), and the network sees the diffusion-weighted volumes only: b=0 volumes pass through unchanged.
Applied to a measured scan, the network removes noise of the level it was trained on from a signal that is itself
noisy (the usual "add noise to real data" protocol; a noise-free real target does not exist).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from equidmri.denoise.defaults import DEFAULT_COPIES, DEFAULT_EPOCHS, DEFAULT_SNRS
from equidmri.denoise.networks import DenoiserSpec, SignalDenoiser
from equidmri.dmri.gradients import B0_THRESHOLD
from equidmri.nn.training import fit_mse, predict_batched
from equidmri.sims.synthesis import add_rician_noise

__all__ = ["DenoiseConfig", "apply_denoiser", "noisy_copies", "reference_s0", "train_denoiser"]


@dataclass(frozen=True)
class DenoiseConfig:
    """Adam on the mean squared error of b0-normalised DW signals (our defaults, measured on small_64D)."""

    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 128  # noisy voxels per step
    lr: float = 3e-3  # Adam learning rate, dimensionless
    snrs: tuple[float, ...] = DEFAULT_SNRS  # b=0 signal over Rician σ of the added noise
    copies: int = DEFAULT_COPIES  # noise realisations per voxel and SNR
    seed: int = 0  # initialisation, noise and batch order


def reference_s0(signals: np.ndarray, bvals: np.ndarray) -> float:
    """Median over voxels of the mean b=0 signal of ``signals`` ``(M, N)``: the s0 of the noise's σ = s0 / SNR.

    Raises
    ------
    ValueError
        If the acquisition has no b=0 volume or the median is not positive.
    """
    b0s = np.asarray(bvals) <= B0_THRESHOLD
    if not b0s.any():
        raise ValueError("the acquisition has no b=0 volume (b <= 50 s/mm²) to normalise by")
    s0 = float(np.median(np.asarray(signals)[:, b0s].mean(1)))
    if not s0 > 0:
        raise ValueError(f"the median b=0 signal must be > 0, got {s0}")
    return s0


def noisy_copies(
    signals: np.ndarray, snrs: tuple[float, ...], s0: float, copies: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(noisy, clean, snr)``: every voxel of ``signals`` ``(M, N)`` ``copies`` times at each SNR with new Rician
    noise; ``noisy`` and ``clean`` ``(M × len(snrs) × copies, N)`` float64, ``snr`` per row."""
    noisy, clean, snr = [], [], []
    for value in snrs:
        for _ in range(copies):
            noisy.append(add_rician_noise(signals, value, s0, rng).astype(np.float64))
            clean.append(signals)
            snr.append(np.full(len(signals), value))
    return np.concatenate(noisy), np.concatenate(clean).astype(np.float64), np.concatenate(snr)


def _normalised(noisy: np.ndarray, b0s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean b=0 of each noisy voxel ``(M,)`` and which voxels have a positive one."""
    b0 = noisy[:, b0s].mean(1)
    return b0, b0 > 0


def train_denoiser(
    spec: DenoiserSpec,
    signals: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    config: DenoiseConfig = DenoiseConfig(),
    *,
    progress: bool = False,
) -> tuple[SignalDenoiser, list[float]]:
    """Build a denoiser of ``spec`` for the acquisition and train it on ``signals`` ``(M, N)`` (scanner units) with
    added Rician noise (see the module docstring); return it (``eval`` mode, float32) and the MSE per epoch.

    Raises
    ------
    ValueError
        If ``signals`` is not ``(M, N)`` for the N volumes, holds non-finite values, or as :func:`reference_s0`
        and :class:`SignalDenoiser`.
    """
    signals = np.asarray(signals, dtype=np.float64)
    if signals.ndim != 2 or signals.shape[1] != np.asarray(bvals).size or not len(signals):
        raise ValueError(f"signals must have shape (M, {np.asarray(bvals).size}) with M >= 1, got {signals.shape}")
    if not np.all(np.isfinite(signals)):
        raise ValueError("training signals must be finite")
    rng = np.random.default_rng(config.seed)
    noisy, clean, _ = noisy_copies(signals, config.snrs, reference_s0(signals, bvals), config.copies, rng)
    b0s = np.asarray(bvals) <= B0_THRESHOLD
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network = SignalDenoiser(spec, bvals, bvecs)
    b0, keep = _normalised(noisy, b0s)
    x = noisy[keep][:, network.dw] / b0[keep, None]
    y = clean[keep][:, network.dw] / b0[keep, None]
    losses = fit_mse(
        network, x, y, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed,
        progress=progress,
    )  # fmt: skip
    return network, losses


def apply_denoiser(network: SignalDenoiser, signals: np.ndarray, bvals: np.ndarray) -> np.ndarray:
    """Denoised ``(M, N)`` float64 of ``signals`` ``(M, N)`` (scanner units): DW volumes from the network, b=0
    volumes unchanged; voxels whose mean b=0 is <= 0 are returned as they are.

    Raises
    ------
    ValueError
        If ``signals`` is not ``(M, N)`` with the network's DW volumes at b > 50 s/mm².
    """
    signals = np.asarray(signals, dtype=np.float64)
    b0s = np.asarray(bvals) <= B0_THRESHOLD
    if signals.ndim != 2 or signals.shape[1] != b0s.size or not np.array_equal(np.flatnonzero(~b0s), network.dw):
        raise ValueError(f"signals must be (M, N) on the network's acquisition, got {signals.shape}")
    out = signals.copy()
    b0, keep = _normalised(signals, b0s)
    if keep.any():
        x = signals[keep][:, network.dw] / b0[keep, None]
        out[np.ix_(keep, network.dw)] = predict_batched(network, x) * b0[keep, None]
    return out
