"""Training-data synthesis from one subject's own tissue statistics (Sadegheih, Weninger & Merhof 2023, WP2).

:func:`calibrate` measures a subject (tissue masks from its own DTI, per-shell prolate tensors of every
single-fibre WM voxel, GM/CSF diffusivities, SNR); :func:`synthesize` draws multi-fibre voxels with those
statistics on the subject's own gradient scheme in one of the modes of :data:`MODES`.

The names are imported on first use (:mod:`equidmri.lazy`), so that :mod:`equidmri.synth.defaults` is read
without numpy or dipy.
"""

from __future__ import annotations

from equidmri.lazy import lazy_attributes

_PUBLIC = {  # name -> the module that defines it
    "DEFAULT_MODE": "equidmri.synth.defaults",
    "MODES": "equidmri.synth.defaults",
    "TissueStatistics": "equidmri.synth.calibration",
    "calibrate": "equidmri.synth.calibration",
    "calibration_shells": "equidmri.synth.calibration",
    "segment_tissues": "equidmri.synth.calibration",
    "SyntheticVoxels": "equidmri.synth.synthesis",
    "synthesize": "equidmri.synth.synthesis",
}

__all__ = [
    "DEFAULT_MODE",
    "MODES",
    "SyntheticVoxels",
    "TissueStatistics",
    "calibrate",
    "calibration_shells",
    "segment_tissues",
    "synthesize",
]

__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
