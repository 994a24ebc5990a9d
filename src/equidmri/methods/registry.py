"""The one table of fODF methods: every method is registered once, by name, and built with :func:`get_method`.

``get_method(name, gtab, **options)`` returns a dipy-style Model whose ``fit(dwi, mask)`` returns an
:class:`~equidmri.recon.model.FODFFit`. Names are matched without regard to case (``"shd-tv"`` is
``"SHD-TV"``); ``"CSD (lmax N)"`` builds dipy's CSD at any even degree N. ``equidmri deconv --method``,
``equidmri methods``, ``bench table`` and ``bench throughput`` read this table.

A learned method is an architecture *with its loss*: SHD and SHD-TV share the ``shd`` network and differ only
by the TV weight written here. To add a method, append a :class:`Method` to :data:`METHODS`.

The table names each Model class as ``"module:Class"`` and imports it only when the method is built, so that
reading it (names, summaries, the extra or executable a method needs) imports neither torch nor dipy.

The FA networks (:mod:`equidmri.microstructure`) predict a scalar map, not an fODF, and keep their own
architecture names; the equivariance and MNIST experiments compare network *operators* (layers), not
methods, and take them from :data:`equidmri.nn.models.registry.MODELS`.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from equidmri.extras import EXTRA_MODULES, MissingExtraError, extra_installed
from equidmri.recon.config import LossWeights

if TYPE_CHECKING:  # the table is read without numpy, dipy or torch (`equidmri methods`, `deconv --help`)
    import numpy as np
    from dipy.core.gradients import GradientTable

    from equidmri.dmri.response import TissueResponses
    from equidmri.recon.model import FODFFit

SHD_TV_WEIGHT = LossWeights().tv  # SHD-TV reference TV weight (Elaldi, Gerig & Dey, NeurIPS 2024, eq. 4)
LMAX_NAME = re.compile(r"^(?P<family>.+) \(lmax (?P<lmax>\d+)\)$", re.IGNORECASE)  # "CSD (lmax 8)"
REQUIRED_COMMAND = "dwi2fod"  # MRtrix3's methods are available when this command is on PATH

__all__ = ["DEFAULT_METHOD", "METHODS", "FODFMethod", "Method", "find_method", "get_method"]


class FODFMethod(Protocol):
    """What :func:`get_method` returns: a Model bound to one acquisition."""

    def fit(self, dwi: np.ndarray, mask: np.ndarray | None = None) -> FODFFit:
        """Deconvolve ``dwi`` ``(X, Y, Z, N)`` inside ``mask`` ``(X, Y, Z)``."""


@dataclass(frozen=True)
class Method:
    """One registered method.

    Attributes
    ----------
    name : str
        Display and look-up name (case-insensitive look-up).
    builder : str
        ``"module:Class"`` of the Model, ``Class(gtab, responses=None, **options) -> FODFMethod``; imported by
        :meth:`build`, so that the table is read without torch or dipy.
    options : dict
        Options that define the method (e.g. ``lmax``, the architecture and its TV weight); options given
        to :func:`get_method` replace them.
    summary : str
        One line for ``equidmri methods``.
    source : str
        Software and paper.
    learned : bool
        Trained (seeds matter) rather than fitted per volume.
    resolutions : tuple of str
        Angular resolutions of ``bench table`` it runs at (MSMT methods need every shell: ``("high",)``).
    requires : str or None
        An executable that must be on ``PATH``.
    extra : str or None
        The pip extra of equidmri whose modules the method needs (:data:`equidmri.extras.EXTRA_MODULES`).
    own_responses : bool
        The method estimates its own responses (MRtrix3) and ignores those it is given.
    """

    name: str
    builder: str
    options: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    source: str = ""
    learned: bool = False
    resolutions: tuple[str, ...] = ("high", "low")
    requires: str | None = None
    own_responses: bool = False
    extra: str | None = None

    @property
    def model_class(self) -> Callable[..., FODFMethod]:
        """The Model class of :attr:`builder`, imported."""
        module, name = self.builder.split(":")
        return getattr(importlib.import_module(module), name)

    def build(self, gtab: GradientTable | None, responses: TissueResponses | None = None, **options: Any) -> FODFMethod:
        """``model_class(gtab, responses, **options)``; no availability check (see :func:`get_method`)."""
        return self.model_class(gtab, responses, **options)

    def unavailable(self) -> str | None:
        """Why the method cannot run here, as a phrase (a missing extra first, then a missing executable);
        None when it can."""
        if self.extra is not None and not extra_installed(self.extra):
            modules = ", ".join(EXTRA_MODULES[self.extra])
            return f"needs {modules}, which is not installed: pip install 'equidmri[{self.extra}]'"
        if self.requires is not None and shutil.which(self.requires) is None:
            return f"needs {self.requires}, which is not on PATH"
        return None

    def available(self) -> bool:
        """True unless :meth:`unavailable` gives a reason."""
        return self.unavailable() is None


def _network(name: str, architecture: str, summary: str, tv: float = 0.0) -> Method:
    return Method(
        name,
        "equidmri.methods.networks:NetworkMethod",
        {"architecture": architecture, "lambda_tv": tv},
        summary,
        "equidmri; Elaldi, Gerig & Dey, NeurIPS 2024",
        learned=True,
    )


DIPY, MRTRIX = "dipy", "MRtrix3 (Tournier et al., NeuroImage 2019)"
CSD, RUMBA = "equidmri.methods.dipy_methods:CSDMethod", "equidmri.methods.dipy_methods:RumbaMethod"
METHODS: tuple[Method, ...] = (
    Method(
        "CSD (lmax 8)",
        CSD,
        {"lmax": 8},
        "single-shell constrained spherical deconvolution, any lmax",
        f"{DIPY}; Tournier et al., NeuroImage 2007",
    ),
    Method("CSD (lmax 6)", CSD, {"lmax": 6}, "the same at lmax 6", f"{DIPY}; Tournier et al., NeuroImage 2007"),
    Method(
        "MSMT-CSD",
        "equidmri.methods.dipy_methods:MSMTCSDMethod",
        {},
        "multi-shell multi-tissue CSD (WM, GM, CSF; cvxpy)",
        f"{DIPY}; Jeurissen et al., NeuroImage 2014",
        resolutions=("high",),
        extra="baselines",
    ),
    Method(
        "RUMBA-SD",
        RUMBA,
        {"use_tv": False},
        "Richardson-Lucy deconvolution with Rician noise",
        f"{DIPY}; Canales-Rodríguez et al., PLoS ONE 2015",
    ),
    Method(
        "RUMBA-SD+TV",
        RUMBA,
        {"use_tv": True},
        "RUMBA-SD with spatial total variation",
        f"{DIPY}; Canales-Rodríguez et al., PLoS ONE 2015",
    ),
    Method(
        "MRtrix3 CSD",
        "equidmri.methods.mrtrix:MRtrixMethod",
        {"algorithm": "csd"},
        "dwi2response tournier + dwi2fod csd",
        MRTRIX,
        requires=REQUIRED_COMMAND,
        own_responses=True,
    ),
    Method(
        "MRtrix3 MSMT-CSD",
        "equidmri.methods.mrtrix:MRtrixMethod",
        {"algorithm": "msmt_csd"},
        "dwi2response dhollander + dwi2fod msmt_csd",
        MRTRIX,
        resolutions=("high",),
        requires=REQUIRED_COMMAND,
        own_responses=True,
    ),
    _network("MLP", "mlp", "voxel-wise MLP on SH coefficients"),
    _network("CNN", "cnn", "3D CNN on SH coefficients"),
    _network("CNN-TV", "cnn", "3D CNN on SH coefficients, TV loss", SHD_TV_WEIGHT),
    _network("ESD", "esd", "voxel-wise spherical U-Net (Chebyshev graph filters)"),
    _network("Concat-ESD", "concat-esd", "ESD with the 3×3×3 neighbours as channels"),
    _network("RT-ESD", "rt-esd", "E(3)×SO(3) U-Net on the full sphere"),
    _network("SHD", "shd", "E(3)×SO(3) U-Net on the hemisphere"),
    _network("SHD-TV", "shd", "SHD with the spatial TV loss", SHD_TV_WEIGHT),
)
DEFAULT_METHOD = "SHD-TV"


def find_method(name: str) -> Method:
    """The registered method called ``name`` (any case); ``"CSD (lmax N)"`` for any even N.

    Raises
    ------
    ValueError
        If no method has that name.
    """
    for method in METHODS:
        if method.name.lower() == name.lower():
            return method
    match = LMAX_NAME.match(name)
    if match:
        for method in METHODS:
            family = LMAX_NAME.match(method.name)
            if family and family["family"].lower() == match["family"].lower():
                return dataclasses.replace(
                    method,
                    name=f"{family['family']} (lmax {int(match['lmax'])})",
                    options={**method.options, "lmax": int(match["lmax"])},
                )
    raise ValueError(f"unknown method {name!r}; choose from {[m.name for m in METHODS]}")


def get_method(name: str, gtab: GradientTable, responses: TissueResponses | None = None, **options: Any) -> FODFMethod:
    """Build the method ``name`` for the acquisition ``gtab``: ``get_method(...).fit(dwi, mask) -> FODFFit``.

    Parameters
    ----------
    name : str
        A name of :data:`METHODS` (any case), or ``"CSD (lmax N)"``.
    gtab : GradientTable
        The acquisition: b-values in s/mm², b-vectors in the voxel-axis frame, with a b=0 volume.
    responses : TissueResponses, optional
        Tissue responses on the shells of ``gtab``; default: estimated inside the mask by ``fit``
        (MRtrix3 methods always estimate their own).
    **options
        Method options (e.g. ``epochs``, ``widths``, ``seed`` of a learned method; ``n_iter`` of RUMBA-SD);
        they replace the options that define the method (architecture, TV weight, lmax) when given.

    Raises
    ------
    ValueError
        If ``name`` is unknown.
    equidmri.extras.MissingExtraError
        If the method needs an extra that is not installed (e.g. MSMT-CSD without cvxpy).
    RuntimeError
        If the method needs an executable that is not on ``PATH``.
    TypeError
        If an option is unknown to the method.
    """
    method = find_method(name)
    reason = method.unavailable()
    if reason is not None:
        missing_extra = method.extra is not None and not extra_installed(method.extra)
        raise (MissingExtraError if missing_extra else RuntimeError)(f"method {method.name!r} {reason}")
    return method.build(gtab, responses, **{**method.options, **options})
