"""Network models and their registry.

:class:`PQSegmentationNet` (p×q-space lesion segmentation) needs e3nn, the ``lesions`` extra, and is imported
on first use.
"""

from equidmri.lazy import lazy_attributes
from equidmri.nn.defaults import DEFAULT_WIDTHS, REFERENCE_WIDTHS
from equidmri.nn.models.lesion_cnn import DWICNN
from equidmri.nn.models.registry import MODELS, build_model
from equidmri.nn.models.sh_unet import SHUNet
from equidmri.nn.models.unet import SHDUNet

_PUBLIC = {"PQSegmentationNet": "equidmri.nn.models.pq_segmentation"}  # e3nn: imported on first use

__all__ = [
    "DWICNN",
    "PQSegmentationNet",
    "MODELS",
    "build_model",
    "SHDUNet",
    "SHUNet",
    "DEFAULT_WIDTHS",
    "REFERENCE_WIDTHS",
]

__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
