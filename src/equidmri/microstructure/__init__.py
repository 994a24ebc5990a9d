"""Scalar microstructure (FA) from clinical 6-direction scans with an FCN and a spherical CNN.

Goodwin-Allcock, McEwen, Gray, Nachev, Zhang & Slator, "How can spherical CNNs benefit ML-based
diffusion MRI parameter estimation?", CDMRI 2022.
"""

from equidmri.microstructure.model import MODELS, FAModel
from equidmri.microstructure.networks import FCN, SphericalCNN
from equidmri.microstructure.schemes import (
    JONES,
    SCHEMES,
    SKARE,
    check_tensor_scheme,
    condition_number,
    get_scheme,
    select_subset,
)
from equidmri.microstructure.simulate import SimulatedVoxels, rotate_to_ap, sample_tensors, simulate_acquisition
from equidmri.microstructure.tensor import adc_profile, fit_tensors, scheme_gtab, tensor_fa, tensor_signals
from equidmri.microstructure.train import FATrainConfig, predict_fa, train_fa_model, train_regressor

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
