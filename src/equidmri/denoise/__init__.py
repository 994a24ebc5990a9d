"""Voxel-wise denoising of diffusion signals with dense and spherical networks (issue 21 §3, the seed report's WP5),
and dipy's MP-PCA and Patch2Self for comparison.

:class:`DenoiserSpec` names an architecture (layer × activation × activation space), :func:`train_denoiser`
trains it on one acquisition's voxels with added Rician noise, :func:`apply_denoiser` applies it;
:mod:`equidmri.denoise.model_file` writes and reads weights-only model files. Names are imported on first use.
"""

from __future__ import annotations

from equidmri.lazy import lazy_attributes

_PUBLIC = {  # name -> the module that defines it
    "ACTIVATIONS": "equidmri.denoise.networks",
    "LAYERS": "equidmri.denoise.networks",
    "SPACES": "equidmri.denoise.networks",
    "DenoiserSpec": "equidmri.denoise.networks",
    "SignalDenoiser": "equidmri.denoise.networks",
    "DenoiseConfig": "equidmri.denoise.train",
    "apply_denoiser": "equidmri.denoise.train",
    "noisy_copies": "equidmri.denoise.train",
    "reference_s0": "equidmri.denoise.train",
    "train_denoiser": "equidmri.denoise.train",
    "DIPY_DENOISERS": "equidmri.denoise.dipy_denoisers",
    "load_denoiser": "equidmri.denoise.model_file",
    "save_denoiser": "equidmri.denoise.model_file",
}

__all__ = sorted(_PUBLIC)

__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
