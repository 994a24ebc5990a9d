"""equidmri: equivariant deep learning for diffusion MRI.

The public API, in dipy's Model/Fit style (arrays in the voxel-axis frame, SH ``descoteaux07``)::

    from equidmri import get_method, load_real_volume, prepare
    prepared = prepare(load_real_volume("small_64D"))          # mask, shells, tissue responses
    fit = get_method("SHD-TV", prepared.gtab, prepared.responses).fit(prepared.data.dwi, prepared.mask)
    peak_dirs, peak_values = fit.peaks()

The names are imported on first use (PEP 562), so that ``import equidmri`` (and ``equidmri --help``) loads
neither torch nor dipy.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from equidmri.lazy import import_public, public_dir

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
    "load_real_volume",
    "prepare",
    "read_cohort",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use and then kept in the package."""
    return import_public(__name__, _PUBLIC, name)


def __dir__() -> list[str]:
    return public_dir(__name__, _PUBLIC)
