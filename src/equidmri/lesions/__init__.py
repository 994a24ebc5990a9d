"""Lesion segmentation of diffusion MRI with the SE(3)-equivariant p×q-space network (Müller et al.,
arXiv:2102.06942) and a 3D-CNN reference: Model/Fit, training, model files."""

from equidmri.lesions.model import NETWORKS, LesionFit, LesionModel, network_input, parameter_count
from equidmri.lesions.model_file import load_lesion_model, save_lesion_model
from equidmri.lesions.train import TrainConfig, lesion_loss

__all__ = [
    "NETWORKS",
    "LesionFit",
    "LesionModel",
    "TrainConfig",
    "lesion_loss",
    "load_lesion_model",
    "network_input",
    "parameter_count",
    "save_lesion_model",
]
