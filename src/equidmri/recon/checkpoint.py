"""Training checkpoints: written atomically, read back as data only.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts (``meta``, ``state_dict``, optimiser
and scheduler state, RNG state, loss history) written by ``torch.save``. It is read with
``torch.load(..., weights_only=True)``: torch's restricted unpickler builds only those types (and the few
torch and ``collections`` types a state dict holds, such as ``OrderedDict`` and the ``Counter`` of
``MultiStepLR``), so a model file from elsewhere can never run code (``equidmri predict --model
untrusted.pt``). Files written by earlier versions hold the same types and load unchanged.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

TMP_PREFIX = ".tmp-"  # same convention as dmri.io's atomic writes
BLOCKED_GLOBAL = re.compile(r"GLOBAL (\S+)")  # how torch's weights-only unpickler names a refused object

__all__ = ["TMP_PREFIX", "UnsafeCheckpointError", "load_checkpoint", "save_checkpoint"]


class UnsafeCheckpointError(ValueError):
    """The file would build Python objects other than tensors and plain containers (it could run code)."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` to a temporary file, then rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(TMP_PREFIX + path.name)
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` onto the CPU, as data only (``weights_only=True``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    UnsafeCheckpointError
        If the file holds other Python objects than tensors, numbers, strings and containers: it is refused
        without building any of them (nothing in it runs).
    ValueError
        If the file is not a readable equidmri checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch warns about pickle protocols before refusing
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = BLOCKED_GLOBAL.search(str(error))
        if found:
            raise UnsafeCheckpointError(
                f"refused to load {path}: it holds Python objects other than tensors, numbers, strings and "
                f"containers ({found.group(1)}), which could run code; model files are read as data only"
            ) from error
        reason = error.__context__ or error  # torch wraps the unpickler's own one-line reason
        raise ValueError(f"{path} is not a readable equidmri checkpoint (read as data only: {reason})") from error
    except (EOFError, RuntimeError) as error:
        raise ValueError(f"{path} is not a readable equidmri checkpoint: {error}") from error
    if not isinstance(state, dict) or "state_dict" not in state or "meta" not in state:
        raise ValueError(f"{path} is not a readable equidmri checkpoint (no 'state_dict' and 'meta')")
    return state


def load_model_file(path: str | os.PathLike, kind: str, what: str, command: str) -> dict[str, Any]:
    """:func:`load_checkpoint`, then check that its ``meta["kind"]`` is ``kind`` (one application's model file).

    ``what`` (e.g. "lesion model") and ``command`` (the one that writes such files) name them in the error.

    Raises
    ------
    FileNotFoundError, UnsafeCheckpointError
        As :func:`load_checkpoint`.
    ValueError
        If the file is not a readable checkpoint, or another kind of model file.
    """
    content = load_checkpoint(path)
    meta = content["meta"]
    if not isinstance(meta, dict) or meta.get("kind") != kind:
        raise ValueError(f"{path} is not a {what} (written by `{command}`)")
    return content
