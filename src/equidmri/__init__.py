"""equidmri: equivariant deep learning for diffusion MRI.

The public API, in dipy's Model/Fit style (arrays in the voxel-axis frame, SH ``descoteaux07``)::

    from equidmri import get_method, load_real_volume, prepare
    prepared = prepare(load_real_volume("small_64D"))          # mask, shells, tissue responses
    fit = get_method("SHD-TV", prepared.gtab, prepared.responses).fit(prepared.data.dwi, prepared.mask)
    peak_dirs, peak_values = fit.peaks()
    fit = load_pretrained(prepared.gtab, prepared.responses).predict(prepared.data.dwi, prepared.mask)  # no training

The names are imported on first use (PEP 562), so that ``import equidmri`` (and ``equidmri --help``) loads
neither torch nor dipy.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from equidmri.lazy import lazy_attributes

try:
    __version__ = version("equidmri")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

_PUBLIC = {  # name -> the module that defines it
    "load_real_volume": "equidmri.data",
    "read_cohort": "equidmri.data",
    "load_dwi": "equidmri.dmri.io",
    "METHODS": "equidmri.methods",
    "get_method": "equidmri.methods",
    "FODFFit": "equidmri.recon.model",
    "NetworkConfig": "equidmri.recon.config",
    "SHDModel": "equidmri.recon.model",
    "prepare": "equidmri.recon.pipeline",
    "load_pretrained": "equidmri.recon.pretrained",
    "TrainConfig": "equidmri.recon.config",
}

__all__ = [
    "METHODS",
    "FODFFit",
    "NetworkConfig",
    "SHDModel",
    "TrainConfig",
    "__version__",
    "get_method",
    "load_dwi",
    "load_pretrained",
    "load_real_volume",
    "prepare",
    "read_cohort",
]

__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
