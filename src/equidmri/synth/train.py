"""Training of the self-adaptive autoencoder on synthetic voxels, and its use on any voxels of the acquisition."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from equidmri.nn.training import fit_mse, predict_batched
from equidmri.synth.autoencoder import SelfAdaptiveAutoencoder

__all__ = ["AutoencoderConfig", "reconstruct", "train_autoencoder"]


@dataclass(frozen=True)
class AutoencoderConfig:
    """Adam on the mean squared reconstruction error (our defaults, not the paper's)."""

    epochs: int = 100  # converged on 1500 synthetic small_64D voxels (tests/synth/test_autoencoder.py)
    batch_size: int = 64  # voxels per step
    lr: float = 1e-3  # Adam learning rate, dimensionless
    seed: int = 0  # initialisation and batch order


def train_autoencoder(
    signals: np.ndarray, config: AutoencoderConfig = AutoencoderConfig(), *, progress: bool = False
) -> tuple[SelfAdaptiveAutoencoder, list[float]]:
    """Build an autoencoder for the N volumes of ``signals`` ``(M, N)`` (b0-normalised) and train it to
    reproduce them; return it (``eval`` mode, float32) and the mean squared error per epoch.

    The initialisation is seeded by ``config.seed`` without touching torch's global random state.

    Raises
    ------
    ValueError
        If ``signals`` is not ``(M, N)``, is empty or holds non-finite values, or a setting is not positive.
    """
    signals = np.asarray(signals)
    if signals.ndim != 2:
        raise ValueError(f"signals must have shape (M, N), got {signals.shape}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network = SelfAdaptiveAutoencoder(int(signals.shape[1]))
    losses = fit_mse(
        network, signals, signals, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        seed=config.seed, progress=progress,
    )  # fmt: skip
    return network, losses


def reconstruct(network: SelfAdaptiveAutoencoder, signals: np.ndarray) -> np.ndarray:
    """The autoencoder's reconstruction ``(M, N)`` float64 of b0-normalised ``signals`` ``(M, N)``.

    Raises
    ------
    ValueError
        If N differs from the network's.
    """
    signals = np.asarray(signals)
    if signals.ndim != 2 or signals.shape[1] != network.n_volumes:
        raise ValueError(f"signals must have shape (M, {network.n_volumes}), got {signals.shape}")
    return predict_batched(network, signals)
