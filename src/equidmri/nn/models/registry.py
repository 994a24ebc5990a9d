"""The one place where model names map to network classes (used by the CLI and the benchmarks)."""

from __future__ import annotations

from typing import Any

from torch import nn

from equidmri.nn.models.unet import SHDUNet

# name -> (class, fixed keyword arguments). SHD and SHD-TV share the network; they differ by the TV loss.
MODELS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "shd": (SHDUNet, {"hemisphere": True}),
    "shd-tv": (SHDUNet, {"hemisphere": True}),
    "rt-esd": (SHDUNet, {"hemisphere": False}),
}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the network registered as ``name`` with ``kwargs`` (raises ``ValueError`` if unknown)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    cls, fixed = MODELS[name]
    return cls(**{**kwargs, **fixed})
