"""Training checkpoints: written atomically, read back with their configuration and responses."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

TMP_PREFIX = ".tmp-"  # same convention as dmri.io's atomic writes


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` to a temporary file, then rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(TMP_PREFIX + path.name)
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` onto the CPU.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable equidmri checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as error:
        raise ValueError(f"{path} is not a readable equidmri checkpoint: {error}") from error
    if not isinstance(state, dict) or "state_dict" not in state or "meta" not in state:
        raise ValueError(f"{path} is not a readable equidmri checkpoint (no 'state_dict' and 'meta')")
    return state
