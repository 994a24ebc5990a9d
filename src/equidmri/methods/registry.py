"""The one table of fODF methods: every method is registered once, by name, and built with :func:`get_method`.

``get_method(name, gtab, **options)`` returns a dipy-style Model whose ``fit(dwi, mask)`` returns an
:class:`~equidmri.recon.model.FODFFit`. Names are matched without regard to case (``"shd-tv"`` is
``"SHD-TV"``); ``"CSD (lmax N)"`` builds dipy's CSD at any even degree N. ``equidmri deconv --method``,
``equidmri methods``, ``bench table`` and ``bench throughput`` read this table.

A learned method is an architecture *with its loss*: SHD and SHD-TV share the ``shd`` network and differ only
by the TV weight written here. To add a method, append a :class:`Method` to :data:`METHODS`.

The FA networks (:mod:`equidmri.microstructure`) predict a scalar map, not an fODF, and keep their own
architecture names; the equivariance and MNIST experiments compare network *operators* (layers), not
methods, and take them from :data:`equidmri.nn.models.registry.MODELS`.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from dipy.core.gradients import GradientTable

from equidmri.dmri.response import TissueResponses
from equidmri.methods.dipy_methods import CSDMethod, MSMTCSDMethod, RumbaMethod
from equidmri.methods.mrtrix import REQUIRED_COMMAND, MRtrixMethod
from equidmri.methods.networks import NetworkMethod
from equidmri.recon.losses import LossWeights
from equidmri.recon.model import FODFFit

SHD_TV_WEIGHT = LossWeights().tv  # SHD-TV reference TV weight (Elaldi, Gerig & Dey, NeurIPS 2024, eq. 4)
LMAX_NAME = re.compile(r"^(?P<family>.+) \(lmax (?P<lmax>\d+)\)$", re.IGNORECASE)  # "CSD (lmax 8)"

__all__ = ["METHODS", "FODFMethod", "Method", "find_method", "get_method"]


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
    build : callable
        ``build(gtab, responses=None, **options) -> FODFMethod``.
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
    own_responses : bool
        The method estimates its own responses (MRtrix3) and ignores those it is given.
    """

    name: str
    build: Callable[..., FODFMethod]
    options: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    source: str = ""
    learned: bool = False
    resolutions: tuple[str, ...] = ("high", "low")
    requires: str | None = None
    own_responses: bool = False

    def available(self) -> bool:
        """True unless :attr:`requires` names a missing executable."""
        return self.requires is None or shutil.which(self.requires) is not None


def _network(name: str, architecture: str, summary: str, tv: float = 0.0) -> Method:
    return Method(
        name,
        NetworkMethod,
        {"architecture": architecture, "lambda_tv": tv},
        summary,
        "equidmri; Elaldi, Gerig & Dey, NeurIPS 2024",
        learned=True,
    )


DIPY, MRTRIX = "dipy", "MRtrix3 (Tournier et al., NeuroImage 2019)"
METHODS: tuple[Method, ...] = (
    Method(
        "CSD (lmax 8)",
        CSDMethod,
        {"lmax": 8},
        "single-shell constrained spherical deconvolution, any lmax",
        f"{DIPY}; Tournier et al., NeuroImage 2007",
    ),
    Method("CSD (lmax 6)", CSDMethod, {"lmax": 6}, "the same at lmax 6", f"{DIPY}; Tournier et al., NeuroImage 2007"),
    Method(
        "MSMT-CSD",
        MSMTCSDMethod,
        {},
        "multi-shell multi-tissue CSD (WM, GM, CSF; cvxpy)",
        f"{DIPY}; Jeurissen et al., NeuroImage 2014",
        resolutions=("high",),
    ),
    Method(
        "RUMBA-SD",
        RumbaMethod,
        {"use_tv": False},
        "Richardson-Lucy deconvolution with Rician noise",
        f"{DIPY}; Canales-Rodríguez et al., PLoS ONE 2015",
    ),
    Method(
        "RUMBA-SD+TV",
        RumbaMethod,
        {"use_tv": True},
        "RUMBA-SD with spatial total variation",
        f"{DIPY}; Canales-Rodríguez et al., PLoS ONE 2015",
    ),
    Method(
        "MRtrix3 CSD",
        MRtrixMethod,
        {"algorithm": "csd"},
        "dwi2response tournier + dwi2fod csd",
        MRTRIX,
        requires=REQUIRED_COMMAND,
        own_responses=True,
    ),
    Method(
        "MRtrix3 MSMT-CSD",
        MRtrixMethod,
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
                return Method(
                    f"{family['family']} (lmax {int(match['lmax'])})",
                    method.build,
                    {**method.options, "lmax": int(match["lmax"])},
                    method.summary,
                    method.source,
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
    RuntimeError
        If the method needs an executable that is not on ``PATH``.
    TypeError
        If an option is unknown to the method.
    """
    method = find_method(name)
    if not method.available():
        raise RuntimeError(f"method {method.name!r} needs {method.requires}, which is not on PATH")
    return method.build(gtab, responses, **{**method.options, **options})
