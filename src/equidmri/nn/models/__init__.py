"""Network models and their registry."""

from equidmri.nn.defaults import DEFAULT_WIDTHS, REFERENCE_WIDTHS
from equidmri.nn.models.registry import MODELS, build_model
from equidmri.nn.models.sh_unet import SHUNet
from equidmri.nn.models.unet import SHDUNet

__all__ = ["MODELS", "build_model", "SHDUNet", "SHUNet", "DEFAULT_WIDTHS", "REFERENCE_WIDTHS"]
