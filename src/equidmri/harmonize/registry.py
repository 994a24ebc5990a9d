"""The one table of harmonizers: every cross-scanner harmonization method is registered once, by name.

``get_harmonizer(name, **options)`` returns an unfitted harmonizer; ``fit(train_subjects)`` learns from
:class:`~equidmri.harmonize.subjects.PairedSubject` training subjects (and returns the harmonizer), and
``apply(dwi, gtab)`` maps a site-A volume onto site B's protocol
(:class:`~equidmri.harmonize.sh_methods.HarmonizedDWI`); ``fit_sites(site_a, site_b)`` learns from unpaired scans
of the two sites, and :mod:`equidmri.harmonize.model_file` saves and loads fitted harmonizers. Names are matched
without regard to case. ``equidmri bench harmonize`` and ``equidmri harmonize`` read this table. To add a method,
append a :class:`Harmonizer` to :data:`HARMONIZERS`; a learned method (:mod:`equidmri.harmonize.learned`) takes
its training settings (``steps``, ``hidden``, ...) as options of its builder, and learned methods that use pairs
also take ``pairs`` in ``fit_sites``. A method with a ``paired_percent`` option gets one bench row per training
mode.

The table names each class as ``"module:Class"`` and imports it only when the method is built, so that reading
it imports neither torch nor dipy. fODF methods have their own table (:mod:`equidmri.methods.registry`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    from dipy.core.gradients import GradientTable

    from equidmri.dmri.io import DWIData
    from equidmri.harmonize.sh_methods import HarmonizedDWI
    from equidmri.harmonize.subjects import PairedSubject

__all__ = ["HARMONIZERS", "Harmonizer", "HarmonizerMethod", "find_harmonizer", "get_harmonizer"]


class HarmonizerMethod(Protocol):
    """What :func:`get_harmonizer` returns."""

    def fit(self, train: Sequence[PairedSubject]) -> HarmonizerMethod:
        """Learn from the training subjects; returns the harmonizer."""

    def fit_sites(self, site_a: Sequence[DWIData], site_b: Sequence[DWIData]) -> HarmonizerMethod:
        """Learn from unpaired scans of the two sites (a method that needs pairs raises ``ValueError``)."""

    def apply(self, dwi: np.ndarray, gtab: GradientTable) -> HarmonizedDWI:
        """Map a site-A volume ``(X, Y, Z, N)`` with protocol ``gtab`` onto site B's protocol."""

    def options(self) -> dict[str, Any]:
        """Constructor options (for model files)."""

    def state(self) -> dict[str, Any]:
        """The fitted state as arrays, numbers and strings (for model files)."""

    def load_state(self, state: dict[str, Any]) -> None:
        """Take over a state written by :meth:`state`."""


@dataclass(frozen=True)
class Harmonizer:
    """One registered harmonizer.

    Attributes
    ----------
    name : str
        Display and look-up name (case-insensitive look-up).
    builder : str
        ``"module:Class"``; ``Class(**options)`` is the unfitted harmonizer.
    options : dict
        Options that define the method; options given to :func:`get_harmonizer` replace them.
    summary : str
        One line for listings and reports.
    source : str
        Paper(s).
    uses_pairs : bool
        ``fit`` uses the pairing of A and B scans of the same subject (supervised); False: site means only.
    learned : bool
        Trained by gradient descent (seeds matter) rather than estimated in closed form.
    """

    name: str
    builder: str
    options: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    source: str = ""
    uses_pairs: bool = False
    learned: bool = False

    @property
    def harmonizer_class(self) -> Callable[..., HarmonizerMethod]:
        """The class of :attr:`builder`, imported."""
        module, name = self.builder.split(":")
        return getattr(importlib.import_module(module), name)

    def build(self, **options: Any) -> HarmonizerMethod:
        """``harmonizer_class(**{**self.options, **options})``."""
        return self.harmonizer_class(**{**self.options, **options})


RISH_SOURCE = "Mirzaalian et al., NeuroImage 2016; Cetin Karayumak et al., NeuroImage 2019"
HARMONIZERS: tuple[Harmonizer, ...] = (
    Harmonizer(
        "baseline",
        "equidmri.harmonize.sh_methods:BaselineHarmonizer",
        summary="no harmonization: site A resampled onto B's directions per shell through SH",
        source="Sadegheih, Weninger & Merhof 2023 (baseline row)",
    ),
    Harmonizer(
        "RISH",
        "equidmri.harmonize.sh_methods:RISHHarmonizer",
        {"scale_maps": True},
        "per-shell, per-degree RISH scale maps (voxel-wise on the training grid, global elsewhere)",
        RISH_SOURCE,
    ),
    Harmonizer(
        "RISH-global",
        "equidmri.harmonize.sh_methods:RISHHarmonizer",
        {"scale_maps": False},
        "RISH with one scale per shell and degree for the whole volume",
        RISH_SOURCE,
    ),
    Harmonizer(
        "SH-ResNet",
        "equidmri.harmonize.learned:SHResNetHarmonizer",
        summary="supervised voxel-wise residual network on the stacked per-shell SH coefficients, signal MSE",
        source="Koppers et al., CDMRI 2016 and 2018",
        uses_pairs=True,
        learned=True,
    ),
    Harmonizer(
        "cyclic",
        "equidmri.harmonize.learned:CyclicHarmonizer",
        {"paired_percent": 0.0},
        "generators A→B and B→A (3³ context) with cycle consistency and moment matching; on paired subjects "
        "also signal MSE and a differentiable DTI (FA, MD) loss; option paired_percent (0 unsupervised, 100 "
        "supervised)",
        "Sadegheih, Weninger & Merhof 2023 (WP1)",
        uses_pairs=True,
        learned=True,
    ),
)


def find_harmonizer(name: str) -> Harmonizer:
    """The registered harmonizer called ``name`` (any case).

    Raises
    ------
    ValueError
        If no harmonizer has that name; the message lists the names.
    """
    for harmonizer in HARMONIZERS:
        if harmonizer.name.lower() == name.lower():
            return harmonizer
    raise ValueError(f"unknown harmonizer {name!r}; choose from {[h.name for h in HARMONIZERS]}")


def get_harmonizer(name: str, **options: Any) -> HarmonizerMethod:
    """Build the unfitted harmonizer ``name``: ``get_harmonizer(name).fit(train).apply(dwi, gtab)``.

    Parameters
    ----------
    name : str
        A name of :data:`HARMONIZERS` (any case).
    **options
        Options of the harmonizer (e.g. ``lmax``); they replace the registered ones.

    Raises
    ------
    ValueError
        If ``name`` is unknown.
    TypeError
        If an option is unknown to the harmonizer.
    """
    return find_harmonizer(name).build(**options)
