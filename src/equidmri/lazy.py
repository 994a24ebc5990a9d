"""Packages whose public names are imported on first use (PEP 562).

A package lists its names and the modules that define them; ``import`` of the package, or of a light module
inside it, then loads none of those modules. This keeps ``equidmri --help`` and ``equidmri <command> --help``
free of torch and dipy. Used by ``equidmri``, ``equidmri.sims`` and ``equidmri.microstructure``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def import_public(package: str, public: dict[str, str], name: str) -> Any:
    """The attribute ``name`` of ``package``, imported from its module in ``public`` and kept in the package.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    public : dict
        Public name -> the module that defines it.
    name : str
        The attribute asked for (``__getattr__``'s argument).

    Raises
    ------
    AttributeError
        If ``name`` is not one of ``public``.
    """
    if name not in public:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(public[name]), name)
    setattr(sys.modules[package], name, value)
    return value


def public_dir(package: str, public: dict[str, str]) -> list[str]:
    """``dir()`` of ``package``: its attributes and the public names not yet imported."""
    return sorted({*vars(sys.modules[package]), *public})


def lazy_attributes(package: str, public: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` (PEP 562) of ``package``, whose names are ``public``.

    Use as ``__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)``: a public name is imported from its
    module on first use (:func:`import_public`) and ``dir()`` lists the names not yet imported (:func:`public_dir`).
    """

    def module_getattr(name: str) -> Any:
        return import_public(package, public, name)

    def module_dir() -> list[str]:
        return public_dir(package, public)

    return module_getattr, module_dir
