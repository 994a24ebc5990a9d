"""Unsupervised training of a deconvolution network on patches of one volume.

Adam with step decay x0.1 at 60/80/90% of the epochs (SHD reference schedule), patches of the mask
drawn from a seeded generator, atomic checkpoints, resume, and a stop with a clear message on a NaN loss.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from equidmri.recon.checkpoint import load_checkpoint, save_checkpoint
from equidmri.recon.config import LEARNING_RATE, LossWeights, TrainConfig
from equidmri.recon.errors import TrainingDivergedError
from equidmri.recon.forward import SignalModel
from equidmri.recon.inputs import SampledInputs
from equidmri.recon.losses import DeconvLoss

logger = logging.getLogger(__name__)

__all__ = [  # TrainConfig, LossWeights, LEARNING_RATE (recon.config) and TrainingDivergedError (recon.errors): no torch
    "DECAY",
    "DECAY_AT",
    "LEARNING_RATE",
    "LossWeights",
    "TrainConfig",
    "TrainingDivergedError",
    "sample_patches",
    "train",
]

DECAY_AT = (0.6, 0.8, 0.9)  # fractions of the epochs where the learning rate is multiplied by DECAY
DECAY = 0.1


def _patch_slices(centre: Tensor, size: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    starts = [min(max(int(c) - s // 2, 0), n - s) for c, s, n in zip(centre, size, shape)]
    return tuple(slice(a, a + s) for a, s in zip(starts, size))


def sample_patches(mask: Tensor, size: int, count: int, generator: torch.Generator) -> list[tuple[slice, ...]]:
    """``count`` patches of edge ``size`` (clipped to the volume) centred on random mask voxels."""
    voxels = mask.nonzero()
    shape = tuple(mask.shape)
    edge = tuple(min(size, n) for n in shape)
    picks = torch.randint(len(voxels), (count,), generator=generator)
    return [_patch_slices(voxels[i], edge, shape) for i in picks.tolist()]


def train(
    net: nn.Module,
    signal_model: SignalModel,
    inputs: Tensor | SampledInputs,
    target: Tensor,
    mask: Tensor,
    config: TrainConfig,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    meta: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Fit ``net`` so that ``signal_model(net(inputs))`` reconstructs ``target`` (SHD eq. 4).

    Parameters
    ----------
    net : nn.Module
        Maps ``(B, C, X, Y, Z, V)`` to the WM fODF ``(B, X, Y, Z, V)`` and fractions ``(B, X, Y, Z, T-1)``.
    signal_model : SignalModel
        Forward model on the same grid and acquisition.
    inputs : Tensor or SampledInputs, shape ``(C, X, Y, Z, V)``
        Network input of the whole volume, read patch by patch as ``inputs[:, sx, sy, sz]`` (CPU is fine;
        patches move to the net's device).
    target : Tensor, shape ``(X, Y, Z, N)``
        b0-normalised DWI.
    mask : Tensor, shape ``(X, Y, Z)`` bool
    config : TrainConfig
    checkpoint_path : path, optional
        Where to save ``{"meta", "state_dict", "optimizer", "scheduler", "epoch", "history", "rng"}``.
    meta : dict, optional
        Stored in the checkpoint (configuration, responses, version).
    resume : bool
        Continue from ``checkpoint_path``.
    callback : callable, optional
        Called as ``callback(epoch, terms)`` after each epoch.

    Returns
    -------
    list of dict
        Mean loss terms of each epoch.

    Raises
    ------
    TrainingDivergedError
        If a loss term is not finite; the last good checkpoint is left in place.
    ValueError
        If the mask is empty or shapes disagree.
    """
    if inputs.shape[1:4] != target.shape[:3] or target.shape[:3] != mask.shape:
        raise ValueError(
            f"inputs {tuple(inputs.shape)}, target {tuple(target.shape)} and mask "
            f"{tuple(mask.shape)} disagree on the volume shape"
        )
    if not mask.any():
        raise ValueError("the mask holds no voxel")
    device = next(net.parameters()).device
    loss_fn = DeconvLoss(config.weights).to(device)
    signal_model = signal_model.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    milestones = sorted({max(1, int(f * config.epochs)) for f in DECAY_AT})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=DECAY)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    start = 0
    if resume:
        if checkpoint_path is None:
            raise ValueError("resume needs a checkpoint path")
        state = load_checkpoint(checkpoint_path)
        net.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["rng"])
        history, start = list(state["history"]), int(state["epoch"])
        logger.info("resuming from epoch %d of %d", start, config.epochs)
    patch_voxels = math.prod(min(config.patch_size, n) for n in mask.shape)
    per_epoch = config.patches_per_epoch or max(config.batch_size, math.ceil(int(mask.sum()) / patch_voxels))
    steps = max(1, per_epoch // config.batch_size)

    def save(epoch: int) -> None:
        if checkpoint_path is not None:
            save_checkpoint(
                checkpoint_path,
                {
                    "meta": meta or {},
                    "state_dict": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "history": history,
                    "rng": generator.get_state(),
                },
            )

    net.train()
    bar = tqdm(
        range(start, config.epochs),
        desc="training",
        unit="epoch",
        disable=not progress,
        initial=start,
        total=config.epochs,
    )
    for epoch in bar:
        sums: dict[str, float] = {}
        for _ in range(steps):
            slices = sample_patches(mask, config.patch_size, config.batch_size, generator)
            x = torch.stack([inputs[(slice(None),) + s] for s in slices]).to(device)
            y = torch.stack([target[s] for s in slices]).to(device)
            m = torch.stack([mask[s] for s in slices]).to(device)
            fodf, iso = signal_model.complete(*net(x), b0=x[:, 0, ..., 0], signal=y)
            terms = loss_fn(signal_model(fodf, iso), y, signal_model.fodf_sh(fodf), m)
            bad = [name for name, value in terms.items() if not torch.isfinite(value)]
            if bad:
                raise TrainingDivergedError(
                    f"loss term(s) {bad} became non-finite at epoch {epoch + 1}; the last good checkpoint "
                    f"({checkpoint_path}) is kept. Try a lower learning rate (TrainConfig.lr) or check the input "
                    "for outliers."
                )
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.item() / steps
        scheduler.step()
        history.append(sums)
        bar.set_postfix({k: f"{v:.3g}" for k, v in sums.items()})
        if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
            save(epoch + 1)
        if callback is not None:
            callback(epoch + 1, sums)
    net.eval()
    return history
