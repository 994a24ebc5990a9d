"""The learned methods: a registered architecture trained with its loss (SHD-TV = ``shd`` + the TV weight).

A :class:`NetworkMethod` is bound to an acquisition like the iterative methods. :meth:`NetworkMethod.fit`
trains the network unsupervised on the volume it deconvolves (responses estimated from it unless given);
:meth:`NetworkMethod.build` returns the underlying :class:`~equidmri.recon.model.SHDModel` for training on one
volume and predicting others, checkpoints and angular super-resolution.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from dipy.core.gradients import GradientTable

from equidmri.dmri.mask import check_mask
from equidmri.dmri.response import TissueResponses
from equidmri.methods.base import volume_responses
from equidmri.recon.model import FODFFit, NetworkConfig, SHDModel
from equidmri.recon.train import TrainConfig

LOSS_OPTIONS = {"lambda_nn": "nn", "lambda_sparsity": "sparsity"}  # option -> LossWeights field
TRAIN_OPTIONS = ("epochs", "patch_size", "batch_size", "patches_per_epoch", "lr", "seed", "checkpoint_every")
NETWORK_OPTIONS = ("nside", "widths", "kernel_sizes", "cheb_order", "kernel", "fractions")

__all__ = ["NetworkMethod"]


class NetworkMethod:
    """An architecture of :data:`equidmri.nn.models.registry.MODELS` with the loss of one method.

    Parameters
    ----------
    gtab : GradientTable
        Target acquisition (reconstructed in training), voxel-axis frame, with a b=0 volume.
    responses : TissueResponses, optional
        On the shells of ``gtab``; default: estimated in :meth:`fit` from the volume and its mask.
    architecture : str
        Registered network name (``"shd"``, ``"rt-esd"``, ``"esd"``, ``"concat-esd"``, ``"cnn"``, ``"mlp"``).
    lambda_tv : float
        Weight of the spatial total variation (SHD paper eq. 4); the method's own, e.g. 0.5 for SHD-TV, 0 for SHD.
    network : NetworkConfig, optional
        Further architecture settings (its ``model`` is replaced by ``architecture``).
    train_config : TrainConfig, optional
        Training settings (its TV weight is replaced by ``lambda_tv``).
    device : str or torch.device
    input_gtab : GradientTable, optional
        The acquisition the network reads, for angular super-resolution (see :class:`SHDModel`).
    **options
        Shortcuts that replace single fields: ``epochs``, ``patch_size``, ``batch_size``, ``patches_per_epoch``,
        ``lr``, ``seed``, ``checkpoint_every`` (:class:`TrainConfig`), ``lambda_nn``, ``lambda_sparsity``
        (:class:`LossWeights`), ``nside``, ``widths``, ``kernel_sizes``, ``cheb_order``, ``kernel``,
        ``fractions`` (:class:`NetworkConfig`).

    Raises
    ------
    TypeError
        If an option is not one of those.

    References
    ----------
    Elaldi, Gerig & Dey, NeurIPS 2024 (SHD, SHD-TV, eq. 4; the baselines of its App. C.3/C.4).
    """

    def __init__(
        self,
        gtab: GradientTable,
        responses: TissueResponses | None = None,
        *,
        architecture: str,
        lambda_tv: float,
        network: NetworkConfig | None = None,
        train_config: TrainConfig | None = None,
        device: str | torch.device = "cpu",
        input_gtab: GradientTable | None = None,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - set(LOSS_OPTIONS) - set(TRAIN_OPTIONS) - set(NETWORK_OPTIONS))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown} of a learned method")
        train_config = train_config or TrainConfig()
        weights = dataclasses.replace(
            train_config.weights, tv=lambda_tv, **{LOSS_OPTIONS[k]: v for k, v in options.items() if k in LOSS_OPTIONS}
        )
        self.train_config = dataclasses.replace(
            train_config, weights=weights, **{k: v for k, v in options.items() if k in TRAIN_OPTIONS}
        )
        network_options = {
            k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if k in NETWORK_OPTIONS
        }
        self.network_config = dataclasses.replace(network or NetworkConfig(), model=architecture, **network_options)
        self.gtab, self.responses, self.device, self.input_gtab = gtab, responses, device, input_gtab

    def build(self, responses: TissueResponses | None = None) -> SHDModel:
        """The untrained :class:`SHDModel` with ``responses`` (default: those given to the constructor).

        Raises
        ------
        ValueError
            If no responses were given here or to the constructor, or as :class:`SHDModel`.
        """
        responses = responses or self.responses
        if responses is None:
            raise ValueError("build needs tissue responses (given here or to the constructor)")
        return SHDModel(
            self.gtab, responses, self.network_config, self.train_config, self.device, input_gtab=self.input_gtab
        )

    def fit(self, dwi: np.ndarray, mask: np.ndarray | None = None) -> FODFFit:
        """Train on ``dwi`` ``(X, Y, Z, N)`` (scanner units) inside ``mask`` (default: every voxel) and deconvolve it.

        Raises
        ------
        ValueError
            As :meth:`SHDModel.fit`, or if the responses cannot be estimated.
        """
        inside = check_mask(mask, np.shape(dwi)[:3])
        return self.build(volume_responses(self.gtab, self.responses, dwi, inside)).fit(np.asarray(dwi), inside)
