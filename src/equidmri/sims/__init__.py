"""Synthetic data: DiSCo-like phantoms with known fibre directions, the same phantoms acquired on two scanners
(``scanners``, for harmonization), the R³×S² digits set (``digits``), and synthetic white-matter lesions
(``lesions``, ``lesion_set``).

The names are imported on first use (:mod:`equidmri.lazy`), so that :mod:`equidmri.sims.defaults` is read
without numpy or dipy.
"""

from __future__ import annotations

from equidmri.lazy import lazy_attributes

_PUBLIC = {  # name -> the module that defines it
    "VOLUMES": "equidmri.sims.defaults",
    "series_paths": "equidmri.sims.dataset",
    "write_phantom_set": "equidmri.sims.dataset",
    "Phantom": "equidmri.sims.phantoms",
    "make_phantom": "equidmri.sims.phantoms",
    "Protocol": "equidmri.sims.synthesis",
    "fibre_signal": "equidmri.sims.synthesis",
    "low_resolution": "equidmri.sims.synthesis",
    "make_protocol": "equidmri.sims.synthesis",
    "ScannerParams": "equidmri.sims.scanners",
    "paired_cohort": "equidmri.sims.scanners",
    "phantom_pair": "equidmri.sims.scanners",
    "real_pair": "equidmri.sims.scanners",
    "LesionVolume": "equidmri.sims.lesions",
    "make_lesion_splits": "equidmri.sims.lesion_set",
    "write_lesion_set": "equidmri.sims.lesion_set",
}

__all__ = [
    "VOLUMES",
    "LesionVolume",
    "Phantom",
    "Protocol",
    "ScannerParams",
    "fibre_signal",
    "low_resolution",
    "make_lesion_splits",
    "make_protocol",
    "paired_cohort",
    "phantom_pair",
    "real_pair",
    "series_paths",
    "write_lesion_set",
    "write_phantom_set",
]

__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
