"""Synthetic data: DiSCo-like phantoms with known fibre directions, and the R³×S² digits set (``digits``)."""

from equidmri.sims.dataset import VOLUMES, series_paths, write_phantom_set
from equidmri.sims.phantoms import Phantom, make_phantom
from equidmri.sims.synthesis import Protocol, fibre_signal, low_resolution, make_protocol

__all__ = [
    "VOLUMES",
    "Phantom",
    "Protocol",
    "fibre_signal",
    "low_resolution",
    "make_phantom",
    "make_protocol",
    "series_paths",
    "write_phantom_set",
]
