"""Trained lesion networks as model files: data only (tensors, numbers, strings), read with ``weights_only=True``.

``meta`` holds the kind, the network's name and options, the training acquisition and the training history;
``state_dict`` the weights. Written atomically by :func:`equidmri.recon.checkpoint.save_checkpoint`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from equidmri.lesions.model import LesionFit, LesionModel
from equidmri.recon.checkpoint import load_model_file, save_checkpoint

MODEL_KIND = "equidmri-lesions"
# Version of the model file: 2 = per-shell standardised input and batch-normalised pq network (issue 19 follow-up);
# files without it were trained on the scan-centred input and cannot be read.
MODEL_VERSION = 2

__all__ = ["MODEL_KIND", "MODEL_VERSION", "load_lesion_model", "save_lesion_model"]


def save_lesion_model(path: str | os.PathLike, fit: LesionFit) -> Path:
    """Write ``fit`` to ``path`` (``.pt``), atomically."""
    meta = {
        "kind": MODEL_KIND,
        "version": MODEL_VERSION,
        "network": fit.network,
        "options": fit.options,
        "bvals": torch.as_tensor(fit.bvals),
        "bvecs": torch.as_tensor(fit.bvecs),
        "history": fit.history,
    }
    return save_checkpoint(path, {"meta": meta, "state_dict": fit.net.state_dict()})


def load_lesion_model(path: str | os.PathLike) -> LesionFit:
    """The :class:`LesionFit` written by :func:`save_lesion_model`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a lesion model (e.g. another equidmri checkpoint).
    equidmri.recon.checkpoint.UnsafeCheckpointError
        If it holds Python objects other than data.
    """
    content = load_model_file(path, MODEL_KIND, "lesion model", "equidmri lesions train")
    meta = content["meta"]
    if meta.get("version") != MODEL_VERSION:
        raise ValueError(
            f"{path} is a lesion model of an older equidmri (another input normalisation); retrain it with "
            "`equidmri lesions train`"
        )
    bvals, bvecs = meta["bvals"].numpy(), meta["bvecs"].numpy()
    model = LesionModel(meta["network"], bvals, bvecs, **meta["options"])
    net = model.build()
    net.load_state_dict(content["state_dict"])
    return LesionFit(meta["network"], net.eval(), dict(meta["options"]), bvals, bvecs, meta["history"])
