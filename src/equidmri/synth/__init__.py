"""Training-data synthesis from one subject's own tissue statistics (Sadegheih, Weninger & Merhof 2023, WP2).

:func:`calibrate` measures a subject (tissue masks from its own DTI, per-shell prolate tensors of every
single-fibre WM voxel, GM/CSF diffusivities, SNR); :func:`synthesize` draws multi-fibre voxels with those
statistics on the subject's own gradient scheme in one of the modes of :data:`MODES`. The self-adaptive
autoencoder (:class:`SelfAdaptiveAutoencoder`, :func:`train_autoencoder`) and :func:`reconstruction_errors`
are the instrument that judges a mode: train on its synthetic voxels, reconstruct real ones.

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
    "SelfAdaptiveAutoencoder": "equidmri.synth.autoencoder",
    "autoencoder_widths": "equidmri.synth.autoencoder",
    "AutoencoderConfig": "equidmri.synth.train",
    "reconstruct": "equidmri.synth.train",
    "train_autoencoder": "equidmri.synth.train",
    "reconstruction_errors": "equidmri.synth.quality",
}

__all__ = [
    "DEFAULT_MODE",
    "MODES",
    "AutoencoderConfig",
    "SelfAdaptiveAutoencoder",
    "SyntheticVoxels",
    "TissueStatistics",
    "autoencoder_widths",
    "calibrate",
    "calibration_shells",
    "reconstruct",
    "reconstruction_errors",
    "segment_tissues",
    "synthesize",
    "train_autoencoder",
]

__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
