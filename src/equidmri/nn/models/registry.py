"""The one place where architecture names map to network classes (used by :mod:`equidmri.methods`).

Every registered network maps ``(B, C_in, X, Y, Z, V)`` to the WM fODF ``(B, X, Y, Z, V)`` and the isotropic
fractions ``(B, X, Y, Z, n_iso)`` and is built as ``build_model(name, in_channels=..., n_iso=..., nside=...,
widths=..., kernel_sizes=..., ...)``. The fixed arguments of a name override the caller's.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from equidmri.nn.models.sh_unet import SHUNet
from equidmri.nn.models.unet import SHDUNet

# name -> (class, fixed keyword arguments). Architectures only: a method (an architecture with its loss, e.g.
# SHD-TV = "shd" + the TV weight) is registered in equidmri.methods. ESD and Concat-ESD run on V+ unless told
# otherwise: for antipodally symmetric signals that is exactly the full-sphere network (SHD Theorem 1), at half
# the cost.
MODELS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "shd": (SHDUNet, {"hemisphere": True}),
    "rt-esd": (SHDUNet, {"hemisphere": False}),
    "esd": (SHDUNet, {"kernel_sizes": 1}),
    "concat-esd": (SHDUNet, {"kernel_sizes": 1, "concat_neighbours": True}),
    "cnn": (SHUNet, {}),
    "mlp": (SHUNet, {"kernel_sizes": 1}),
}
SPHERICAL_FILTER_ARGS = ("cheb_order", "kernel", "sigma")  # arguments of the spherical filters only


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the network registered as ``name`` with ``kwargs`` (raises ``ValueError`` if unknown).

    The SH networks have no spherical filter and ignore ``cheb_order``, ``kernel`` and ``sigma``, so that
    one network configuration builds every model.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    cls, fixed = MODELS[name]
    if cls is SHUNet:
        kwargs = {key: value for key, value in kwargs.items() if key not in SPHERICAL_FILTER_ARGS}
    return cls(**{**kwargs, **fixed})
