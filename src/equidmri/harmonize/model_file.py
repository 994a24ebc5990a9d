"""Fitted harmonizers as model files: data only (tensors, numbers, strings), read with ``weights_only=True``.

A file holds, as ``meta``, the registered name and the constructor options, and, as ``state_dict``, the fitted
state of one harmonizer
(``options()``, ``state()`` and ``load_state()`` of :class:`equidmri.harmonize.sh_methods.SHHarmonizer`), written
atomically by :func:`equidmri.recon.checkpoint.save_checkpoint`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from equidmri.harmonize.registry import HarmonizerMethod, find_harmonizer
from equidmri.recon.checkpoint import load_model_file, save_checkpoint

MODEL_KIND = "equidmri-harmonizer"

__all__ = ["MODEL_KIND", "load_harmonizer", "save_harmonizer"]


def _to_file(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, dict):
        return {key: _to_file(item) for key, item in value.items()}
    return value


def _from_file(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {key: _from_file(item) for key, item in value.items()}
    return value


def save_harmonizer(path: str | os.PathLike, name: str, harmonizer: HarmonizerMethod) -> Path:
    """Write the fitted harmonizer registered as ``name`` to ``path`` (``.pt``), atomically.

    Raises
    ------
    ValueError
        If ``name`` is not a registered harmonizer.
    RuntimeError
        If the harmonizer has not been fitted.
    """
    entry = find_harmonizer(name)
    meta = {"kind": MODEL_KIND, "name": entry.name, "options": harmonizer.options()}
    return save_checkpoint(path, {"meta": meta, "state_dict": _to_file(harmonizer.state())})


def load_harmonizer(path: str | os.PathLike) -> tuple[str, HarmonizerMethod]:
    """``(name, fitted harmonizer)`` read from a file written by :func:`save_harmonizer`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a harmonizer model file (e.g. another equidmri checkpoint) or names an unknown method.
    equidmri.recon.checkpoint.UnsafeCheckpointError
        If it holds Python objects other than data.
    """
    content = load_model_file(path, MODEL_KIND, "harmonizer model", "equidmri harmonize train")
    meta = content["meta"]
    entry = find_harmonizer(meta["name"])
    harmonizer = entry.build(**meta["options"])
    harmonizer.load_state(_from_file(content["state_dict"]))
    return entry.name, harmonizer
