"""One supervised training loop for voxel-wise networks on arrays: Adam on the mean squared error.

Used by the FA regressors (:mod:`equidmri.microstructure.train`) and the signal autoencoder
(:mod:`equidmri.synth.train`), so that their differences come from the architecture, not the loop.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

PREDICT_BATCH = 4096  # voxels per forward pass at inference (memory bound only)

__all__ = ["PREDICT_BATCH", "fit_mse", "predict_batched"]


def fit_mse(
    network: nn.Module,
    inputs: np.ndarray,
    targets: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: bool = False,
) -> list[float]:
    """Fit ``network`` to map ``inputs`` ``(M, F)`` to ``targets`` ``(M, ...)`` by MSE; return the mean loss per epoch.

    Adam with learning rate ``lr``; batches of ``batch_size`` reshuffled every epoch by a generator seeded with
    ``seed`` (the network's initialisation is the caller's). The network is trained in place (float32) and left in
    ``eval`` mode.

    Raises
    ------
    ValueError
        If ``inputs`` and ``targets`` have different lengths, are empty or hold non-finite values, or ``epochs``,
        ``batch_size`` or ``lr`` is not positive.
    """
    if len(inputs) != len(targets) or len(inputs) == 0:
        raise ValueError(f"inputs and targets must have the same non-zero length, got {len(inputs)} and {len(targets)}")
    if not (np.all(np.isfinite(inputs)) and np.all(np.isfinite(targets))):
        raise ValueError("training inputs and targets must be finite")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"epochs and batch_size must be >= 1 and lr > 0, got {epochs}, {batch_size} and {lr}")
    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    y = torch.as_tensor(np.asarray(targets, dtype=np.float32))
    optimiser = torch.optim.Adam(network.parameters(), lr=lr)
    losses = []
    network.train()
    for _ in tqdm(range(epochs), desc=f"train {type(network).__name__}", unit="epoch", disable=not progress):
        total = 0.0
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            loss = nn.functional.mse_loss(network(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        losses.append(total / len(x))
        logger.debug("epoch %d: MSE %.5g", len(losses), losses[-1])
    network.eval()
    return losses


def predict_batched(network: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """``network`` applied to ``inputs`` ``(M, F)`` in chunks of ``PREDICT_BATCH`` without gradients, as float64.

    Returns
    -------
    ndarray, shape ``(M, ...)`` float64
        The network's output per voxel; ``(0,)`` for no input.
    """
    network.eval()
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    if not len(x):
        return np.zeros(0)
    with torch.no_grad():
        return torch.cat([network(chunk) for chunk in x.split(PREDICT_BATCH)]).double().numpy()
