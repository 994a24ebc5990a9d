"""Scalar microstructure (FA) from clinical 6-direction scans with an FCN and a spherical CNN.

Goodwin-Allcock, McEwen, Gray, Nachev, Zhang & Slator, "How can spherical CNNs benefit ML-based
diffusion MRI parameter estimation?", CDMRI 2022.

The names are imported on first use (:mod:`equidmri.lazy`), so that :mod:`equidmri.microstructure.config` is
read without torch.
"""

from __future__ import annotations

from equidmri.lazy import lazy_attributes

_PUBLIC = {  # name -> the module that defines it
    "MODELS": "equidmri.microstructure.config",
    "FAModel": "equidmri.microstructure.model",
    "FCN": "equidmri.microstructure.networks",
    "SphericalCNN": "equidmri.microstructure.networks",
    "JONES": "equidmri.microstructure.schemes",
    "SCHEMES": "equidmri.microstructure.schemes",
    "SKARE": "equidmri.microstructure.schemes",
    "check_tensor_scheme": "equidmri.microstructure.schemes",
    "condition_number": "equidmri.microstructure.schemes",
    "get_scheme": "equidmri.microstructure.schemes",
    "select_subset": "equidmri.microstructure.schemes",
    "SimulatedVoxels": "equidmri.microstructure.simulate",
    "rotate_to_ap": "equidmri.microstructure.simulate",
    "sample_tensors": "equidmri.microstructure.simulate",
    "simulate_acquisition": "equidmri.microstructure.simulate",
    "adc_profile": "equidmri.microstructure.tensor",
    "fit_tensors": "equidmri.microstructure.tensor",
    "scheme_gtab": "equidmri.microstructure.tensor",
    "tensor_fa": "equidmri.microstructure.tensor",
    "tensor_signals": "equidmri.microstructure.tensor",
    "FATrainConfig": "equidmri.microstructure.config",
    "predict_fa": "equidmri.microstructure.train",
    "train_fa_model": "equidmri.microstructure.train",
    "train_regressor": "equidmri.microstructure.train",
}

__all__ = [
    "FCN",
    "JONES",
    "MODELS",
    "SCHEMES",
    "SKARE",
    "FAModel",
    "FATrainConfig",
    "SimulatedVoxels",
    "SphericalCNN",
    "adc_profile",
    "check_tensor_scheme",
    "condition_number",
    "fit_tensors",
    "get_scheme",
    "predict_fa",
    "rotate_to_ap",
    "sample_tensors",
    "scheme_gtab",
    "select_subset",
    "simulate_acquisition",
    "tensor_fa",
    "tensor_signals",
    "train_fa_model",
    "train_regressor",
]

__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
