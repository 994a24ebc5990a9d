"""Unsupervised training of a deconvolution network on patches: of one volume, or of a cohort.

Adam with step decay x0.1 at 60/80/90% of the epochs (SHD reference schedule), atomic checkpoints, resume,
and a stop with a clear message on a NaN loss. :func:`run_training` is the loop; a :class:`PatchSource`
says which patches each optimiser step sees and how its loss is computed: :class:`VolumePatches` draws
patches of one volume's mask from a seeded generator (:func:`train`, behind ``deconv``),
:class:`equidmri.recon.cohort.CohortPatches` batches of many subjects, split over the processes of a
``torch.distributed`` run. Under ``torch.distributed`` the loop wraps the network in
``DistributedDataParallel`` (gradients averaged over the processes at every step), logs the loss averaged
over the processes and writes checkpoints from rank 0 only.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch
import torch.distributed as dist
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
    "PatchSource",
    "TrainConfig",
    "TrainingDivergedError",
    "VolumePatches",
    "patch_loss",
    "patch_slices",
    "run_training",
    "sample_patches",
    "train",
]

DECAY_AT = (0.6, 0.8, 0.9)  # fractions of the epochs where the learning rate is multiplied by DECAY
DECAY = 0.1


def patch_slices(centre: Sequence[int], size: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Slices of the box of edges ``size`` centred on the voxel ``centre``, moved inside a volume of ``shape``."""
    starts = [min(max(int(c) - s // 2, 0), n - s) for c, s, n in zip(centre, size, shape)]
    return tuple(slice(a, a + s) for a, s in zip(starts, size))


def sample_patches(mask: Tensor, size: int, count: int, generator: torch.Generator) -> list[tuple[slice, ...]]:
    """``count`` patches of edge ``size`` (clipped to the volume) centred on random mask voxels."""
    voxels = mask.nonzero()
    shape = tuple(mask.shape)
    edge = tuple(min(size, n) for n in shape)
    picks = torch.randint(len(voxels), (count,), generator=generator)
    return [patch_slices(voxels[i], edge, shape) for i in picks.tolist()]


class PatchSource(Protocol):
    """What :func:`run_training` trains on: the batches of each epoch and the loss of one batch."""

    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch (the same on every process of a distributed run)."""

    def batches(self, epoch: int) -> Iterator[Any]:
        """The ``steps_per_epoch()`` batches of epoch ``epoch`` (0-based), in order."""

    def loss_terms(self, net: nn.Module, batch: Any, loss_fn: DeconvLoss) -> dict[str, Tensor]:
        """Loss terms of ``net`` on ``batch`` (see :class:`~equidmri.recon.losses.DeconvLoss`)."""

    def state(self) -> Any:
        """What a checkpoint must hold to continue the sampling (tensors and plain containers), or None."""

    def load_state(self, state: Any) -> None:
        """Continue from :meth:`state` of an earlier run."""


def patch_loss(
    net: nn.Module,
    signal_model: SignalModel,
    loss_fn: DeconvLoss,
    x: Tensor,
    y: Tensor,
    m: Tensor,
    fodf_target: Tensor | None = None,
    fodf_weight: float = 0.0,
) -> dict[str, Tensor]:
    """SHD eq. 4 on one batch: ``x (B, C, X, Y, Z, V)`` network input, ``y (B, X, Y, Z, N)`` b0-normalised target,
    ``m (B, X, Y, Z)`` bool loss mask, all on the net's device; the network's outputs are completed by the
    signal model (:meth:`~equidmri.recon.forward.SignalModel.complete`: tissue fractions from the measured b=0,
    ``x``'s channel 0, or fitted to ``y``, as its fraction mode says).

    With a ground-truth ``fodf_target (B, X, Y, Z, K)`` (descoteaux07 SH of a known fODF, K coefficients: a
    phantom's), the term ``fodf`` — the mean squared difference of the first K SH coefficients of the WM fODF, i.e.
    the L2 distance of the two fODFs band-limited to that degree — is added to ``total`` with ``fodf_weight``.
    """
    fodf, iso = signal_model.complete(*net(x), b0=x[:, 0, ..., 0], signal=y)
    fodf_sh = signal_model.fodf_sh(fodf)
    terms = loss_fn(signal_model(fodf, iso), y, fodf_sh, m)
    if fodf_target is not None:
        terms["fodf"] = (fodf_sh[..., : fodf_target.shape[-1]][m] - fodf_target[m]).square().mean()
        terms["total"] = terms["total"] + fodf_weight * terms["fodf"]
    return terms


class VolumePatches:
    """Patches of one volume's mask, ``config.batch_size`` per step, from a generator seeded by ``config.seed``.

    Parameters
    ----------
    signal_model : SignalModel
        Forward model of the volume's acquisition (moved to ``device``).
    inputs : Tensor or SampledInputs, shape ``(C, X, Y, Z, V)``
        Network input of the whole volume, read patch by patch.
    target : Tensor, shape ``(X, Y, Z, N)``
        b0-normalised DWI.
    mask : Tensor, shape ``(X, Y, Z)`` bool
    config : TrainConfig
    device : torch.device
        Where the batches go (the net's device).

    Raises
    ------
    ValueError
        If the mask is empty or the shapes disagree.
    """

    def __init__(
        self,
        signal_model: SignalModel,
        inputs: Tensor | SampledInputs,
        target: Tensor,
        mask: Tensor,
        config: TrainConfig,
        device: torch.device,
    ) -> None:
        if inputs.shape[1:4] != target.shape[:3] or target.shape[:3] != mask.shape:
            raise ValueError(
                f"inputs {tuple(inputs.shape)}, target {tuple(target.shape)} and mask "
                f"{tuple(mask.shape)} disagree on the volume shape"
            )
        if not mask.any():
            raise ValueError("the mask holds no voxel")
        self.signal_model = signal_model.to(device)
        self.inputs, self.target, self.mask, self.config, self.device = inputs, target, mask, config, device
        self.generator = torch.Generator().manual_seed(config.seed)
        patch_voxels = math.prod(min(config.patch_size, n) for n in mask.shape)
        per_epoch = config.patches_per_epoch or max(config.batch_size, math.ceil(int(mask.sum()) / patch_voxels))
        self.steps = max(1, per_epoch // config.batch_size)

    def steps_per_epoch(self) -> int:
        """Patches per epoch (``config.patches_per_epoch``, default mask voxels / patch voxels) // batch size."""
        return self.steps

    def batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """``(x, y, m)`` per step, patches drawn from the generator (its state carries over the epochs)."""
        for _ in range(self.steps):
            slices = sample_patches(self.mask, self.config.patch_size, self.config.batch_size, self.generator)
            x = torch.stack([self.inputs[(slice(None),) + s] for s in slices]).to(self.device)
            y = torch.stack([self.target[s] for s in slices]).to(self.device)
            m = torch.stack([self.mask[s] for s in slices]).to(self.device)
            yield x, y, m

    def loss_terms(
        self, net: nn.Module, batch: tuple[Tensor, Tensor, Tensor], loss_fn: DeconvLoss
    ) -> dict[str, Tensor]:
        """:func:`patch_loss` with the volume's signal model."""
        return patch_loss(net, self.signal_model, loss_fn, *batch)

    def state(self) -> Tensor:
        """The patch generator's state (``torch.Generator.get_state``)."""
        return self.generator.get_state()

    def load_state(self, state: Tensor) -> None:
        """Restore the patch generator."""
        self.generator.set_state(state)


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
    checkpoint_path, meta, resume, progress, callback
        See :func:`run_training`.

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
    device = next(net.parameters()).device
    source = VolumePatches(signal_model, inputs, target, mask, config, device)
    return run_training(
        net,
        source,
        config,
        checkpoint_path=checkpoint_path,
        meta=meta,
        resume=resume,
        progress=progress,
        callback=callback,
    )


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _any_rank(flag: bool) -> bool:
    """``flag`` of this process, or of any process of a distributed run (one all-reduce)."""
    if not _distributed():
        return flag
    value = torch.tensor([float(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _mean_over_ranks(terms: dict[str, float]) -> dict[str, float]:
    """Per-epoch loss terms averaged over the processes of a distributed run (unchanged otherwise)."""
    if not _distributed():
        return terms
    names = sorted(terms)
    values = torch.tensor([terms[name] for name in names], dtype=torch.float64)
    dist.all_reduce(values)
    return {name: float(v) / dist.get_world_size() for name, v in zip(names, values)}


def run_training(
    net: nn.Module,
    source: PatchSource,
    config: TrainConfig,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    meta: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """The training loop: Adam with step decay over ``config.epochs`` epochs of ``source``'s batches.

    In a ``torch.distributed`` run (process group initialised by the caller, e.g. under ``torchrun``) the
    network is wrapped in ``DistributedDataParallel`` (BatchNorm statistics stay per process; DDP copies rank
    0's running statistics to the others at each step), a non-finite loss on any process stops every process,
    the history holds the loss averaged over the processes, and only rank 0 writes the checkpoint.

    Parameters
    ----------
    net : nn.Module
        The network (not wrapped); its weights are trained in place.
    source : PatchSource
    config : TrainConfig
    checkpoint_path : path, optional
        Where to save ``{"meta", "state_dict", "optimizer", "scheduler", "epoch", "history", "rng"}``
        (``rng``: ``source.state()``), every ``config.checkpoint_every`` epochs and after the last.
    meta : dict, optional
        Stored in the checkpoint (configuration, responses, version).
    resume : bool
        Continue from ``checkpoint_path`` (every process reads it).
    progress : bool
        Show a progress bar (rank 0 only).
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
        If ``resume`` without a checkpoint path.
    """
    device = next(net.parameters()).device
    loss_fn = DeconvLoss(config.weights).to(device)
    main = not _distributed() or dist.get_rank() == 0
    model = net
    if _distributed():
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    milestones = sorted({max(1, int(f * config.epochs)) for f in DECAY_AT})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=DECAY)
    history: list[dict[str, float]] = []
    start = 0
    if resume:
        if checkpoint_path is None:
            raise ValueError("resume needs a checkpoint path")
        state = load_checkpoint(checkpoint_path)
        net.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        source.load_state(state["rng"])
        history, start = list(state["history"]), int(state["epoch"])
        logger.info("resuming from epoch %d of %d", start, config.epochs)
    steps = source.steps_per_epoch()

    def save(epoch: int) -> None:
        if checkpoint_path is not None and main:
            save_checkpoint(
                checkpoint_path,
                {
                    "meta": meta or {},
                    "state_dict": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "history": history,
                    "rng": source.state(),
                },
            )

    model.train()
    bar = tqdm(
        range(start, config.epochs),
        desc="training",
        unit="epoch",
        disable=not (progress and main),
        initial=start,
        total=config.epochs,
    )
    for epoch in bar:
        sums: dict[str, float] = {}
        for batch in source.batches(epoch):
            terms = source.loss_terms(model, batch, loss_fn)
            bad = [name for name, value in terms.items() if not torch.isfinite(value)]
            if _any_rank(bool(bad)):
                raise TrainingDivergedError(
                    f"loss term(s) {bad or 'of another process'} became non-finite at epoch {epoch + 1}; the last "
                    f"good checkpoint ({checkpoint_path}) is kept. Try a lower learning rate (TrainConfig.lr) or "
                    "check the input for outliers."
                )
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.item() / steps
        scheduler.step()
        sums = _mean_over_ranks(sums)
        history.append(sums)
        bar.set_postfix({k: f"{v:.3g}" for k, v in sums.items()})
        if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
            save(epoch + 1)
        if callback is not None:
            callback(epoch + 1, sums)
    net.eval()
    return history
