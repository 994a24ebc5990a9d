"""One training loop for both FA regressors, so that differences come from the architecture.

Adam, learning rate 1e-3, batch 32, mean squared error on FA, 50 epochs (Goodwin-Allcock et al.,
CDMRI 2022, §2.3, for both networks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from equidmri.microstructure.config import FATrainConfig
from equidmri.nn.training import fit_mse, predict_batched

if TYPE_CHECKING:  # model.py imports this module
    from dipy.core.gradients import GradientTable

    from equidmri.microstructure.model import FAModel


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

    :func:`equidmri.nn.training.fit_mse` with the settings of ``config``; the network is trained in place.

    Raises
    ------
    ValueError
        If ``inputs`` and ``fa`` have different lengths or hold non-finite values.
    """
    return fit_mse(
        network, inputs, fa, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed,
        progress=progress,
    )  # fmt: skip


def predict_fa(network: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """FA predicted for ``inputs`` ``(M, F)``, shape ``(M,)`` float64 (not clipped to [0, 1])."""
    return predict_batched(network, inputs)
