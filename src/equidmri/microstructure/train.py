"""One training loop for both FA regressors, so that differences come from the architecture.

Adam, learning rate 1e-3, batch 32, mean squared error on FA, 50 epochs (Goodwin-Allcock et al.,
CDMRI 2022, §2.3, for both networks).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from equidmri.microstructure.config import FATrainConfig

if TYPE_CHECKING:  # model.py imports this module
    from dipy.core.gradients import GradientTable

    from equidmri.microstructure.model import FAModel

logger = logging.getLogger(__name__)

PREDICT_BATCH = 4096  # voxels per forward pass at inference (memory bound only)


def train_fa_model(
    model: FAModel,
    signals: np.ndarray,
    gtab: GradientTable,
    fa: np.ndarray,
    config: FATrainConfig = FATrainConfig(),
    *,
    progress: bool = False,
) -> list[float]:
    """Train ``model.net`` on the signals ``(M, N)`` of ``gtab`` with ground-truth ``fa`` ``(M,)``, through
    ``model.inputs``; return the MSE per epoch (see :func:`train_regressor`, same errors)."""
    return train_regressor(model.net, model.inputs(signals, gtab), fa, config, progress=progress)


def train_regressor(
    network: nn.Module,
    inputs: np.ndarray,
    fa: np.ndarray,
    config: FATrainConfig = FATrainConfig(),
    *,
    progress: bool = False,
) -> list[float]:
    """Fit ``network`` to map ``inputs`` ``(M, F)`` to ``fa`` ``(M,)`` by MSE; return the mean loss per epoch.

    Batches are reshuffled every epoch with ``config.seed``; the network is trained in place.

    Raises
    ------
    ValueError
        If ``inputs`` and ``fa`` have different lengths or hold non-finite values.
    """
    if len(inputs) != len(fa):
        raise ValueError(f"inputs and fa must have the same length, got {len(inputs)} and {len(fa)}")
    if not (np.all(np.isfinite(inputs)) and np.all(np.isfinite(fa))):
        raise ValueError("training inputs and FA must be finite")
    generator = torch.Generator().manual_seed(config.seed)
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    y = torch.as_tensor(np.asarray(fa, dtype=np.float32))
    optimiser = torch.optim.Adam(network.parameters(), lr=config.lr)
    losses = []
    network.train()
    for _ in tqdm(range(config.epochs), desc=f"train {type(network).__name__}", unit="epoch", disable=not progress):
        total = 0.0
        for batch in torch.randperm(len(x), generator=generator).split(config.batch_size):
            loss = nn.functional.mse_loss(network(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        losses.append(total / len(x))
        logger.debug("epoch %d: MSE %.5f", len(losses), losses[-1])
    network.eval()
    return losses


def predict_fa(network: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """FA predicted for ``inputs`` ``(M, F)``, shape ``(M,)`` float64 (not clipped to [0, 1])."""
    network.eval()
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    with torch.no_grad():
        return (
            torch.cat([network(chunk) for chunk in x.split(PREDICT_BATCH)]).double().numpy() if len(x) else np.zeros(0)
        )
