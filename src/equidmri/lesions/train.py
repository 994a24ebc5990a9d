"""Training of the lesion networks: whole small volumes, BCE (+ soft Dice) inside the mask, Adam.

Seeds: the initial weights and the order of the volumes come from ``seed`` (torch's global state is restored
afterwards, :func:`torch.random.fork_rng`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from equidmri.lesions.model import network_input, q_vectors_of

if TYPE_CHECKING:
    from equidmri.lesions.model import LesionModel

# Adam learning rate per network, from one short try each on tiny phantom sets (not a tuned choice): at 1e-2 the
# p×q-space network's training loss stayed near the prior's for 8 epochs, at 3e-2 it fell; the CNN did better at 1e-2
DEFAULT_LEARNING_RATE = {"pq": 3e-2, "cnn": 1e-2}

__all__ = ["DEFAULT_LEARNING_RATE", "TrainConfig", "lesion_loss", "train_network"]


@dataclass(frozen=True)
class TrainConfig:
    """Epochs (passes over the training volumes), Adam learning rate (None: the network's
    :data:`DEFAULT_LEARNING_RATE`), weight of the soft Dice term (0: BCE only), seed, and an optional callback
    ``progress(epoch, train_loss)``."""

    epochs: int = 20
    learning_rate: float | None = None
    dice_weight: float = 0.0
    seed: int = 0
    progress: Callable[[int, float], None] | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or (self.learning_rate is not None and self.learning_rate <= 0) or self.dice_weight < 0:
            raise ValueError(
                f"need epochs >= 1, learning_rate > 0, dice_weight >= 0, got {self.epochs}, {self.learning_rate}, "
                f"{self.dice_weight}"
            )


def lesion_loss(logits: Tensor, labels: Tensor, mask: Tensor, dice_weight: float = 0.0) -> Tensor:
    """Mean binary cross-entropy over the mask voxels, plus ``dice_weight`` × (1 - soft Dice).

    Parameters
    ----------
    logits, labels : Tensor, shape ``(B, X, Y, Z)``
        Pre-sigmoid scores; 0/1 lesion labels (float).
    mask : Tensor, shape ``(B, X, Y, Z)`` bool

    References
    ----------
    Milletari, Navab & Ahmadi, 3DV 2016 (soft Dice).
    """
    bce = nn.functional.binary_cross_entropy_with_logits(logits[mask], labels[mask])
    if dice_weight == 0:
        return bce
    p = torch.sigmoid(logits[mask])
    dice = (2 * (p * labels[mask]).sum() + 1.0) / (p.sum() + labels[mask].sum() + 1.0)
    return bce + dice_weight * (1 - dice)


def _tensors(volume: Any) -> tuple[Tensor, Tensor, Tensor]:
    x = network_input(volume.dwi, volume.bvals, volume.mask)
    labels = torch.from_numpy(np.asarray(volume.labels, dtype=np.float32))[None]
    return x, labels, torch.from_numpy(np.asarray(volume.mask, dtype=bool))[None]


def _bind(model: LesionModel, net: nn.Module, volume: Any) -> None:
    if model.network == "pq":
        net.set_q_vectors(q_vectors_of(volume.bvals, volume.bvecs).to(torch.get_default_dtype()))
    elif volume.dwi.shape[-1] != len(model.bvals):
        raise ValueError(f"the cnn takes {len(model.bvals)} volumes, a training scan has {volume.dwi.shape[-1]}")


def train_network(model: LesionModel, train: list, val: list, config: TrainConfig) -> tuple[nn.Module, dict]:
    """Train a fresh network of ``model`` on ``train``; returns it (best validation epoch) and the history.

    Raises
    ------
    ValueError
        If ``train`` is empty, or a scan does not fit the network.
    """
    if not train:
        raise ValueError("no training volume")
    start = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        net = model.build()
        order = torch.Generator().manual_seed(config.seed)
        learning_rate = config.learning_rate or DEFAULT_LEARNING_RATE[model.network]
        optimiser = torch.optim.Adam(net.parameters(), lr=learning_rate)
        data = [(_tensors(v), v) for v in train]
        checks = [(_tensors(v), v) for v in val]
        history: dict[str, Any] = {"learning_rate": learning_rate, "train": [], "val": []}
        best, best_loss = copy.deepcopy(net.state_dict()), float("inf")
        for epoch in range(config.epochs):
            net.train()
            losses = []
            for i in torch.randperm(len(data), generator=order).tolist():
                (x, labels, mask), volume = data[i]
                _bind(model, net, volume)
                loss = lesion_loss(net.logits(x), labels, mask, config.dice_weight)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                losses.append(float(loss.detach()))
            history["train"].append(float(np.mean(losses)))
            if checks:
                history["val"].append(_evaluate(model, net, checks, config.dice_weight))
            score = history["val"][-1] if checks else history["train"][-1]
            if score < best_loss:
                best, best_loss, history["best_epoch"] = copy.deepcopy(net.state_dict()), score, epoch + 1
            if config.progress is not None:
                config.progress(epoch + 1, history["train"][-1])
        net.load_state_dict(best)
    history["seconds"] = time.perf_counter() - start
    return net.eval(), history


def _evaluate(model: LesionModel, net: nn.Module, checks: list, dice_weight: float) -> float:
    net.eval()
    losses = []
    with torch.no_grad():
        for (x, labels, mask), volume in checks:
            _bind(model, net, volume)
            losses.append(float(lesion_loss(net.logits(x), labels, mask, dice_weight)))
    return float(np.mean(losses))
