"""equidmri: equivariant deep learning for diffusion MRI.

The public API, in dipy's Model/Fit style (arrays in the voxel-axis frame, SH ``descoteaux07``)::

    from equidmri import get_method, load_real_volume, prepare
    prepared = prepare(load_real_volume("small_64D"))          # mask, shells, tissue responses
    fit = get_method("SHD-TV", prepared.gtab, prepared.responses).fit(prepared.data.dwi, prepared.mask)
    peak_dirs, peak_values = fit.peaks()
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("equidmri")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from equidmri.data import load_real_volume, read_cohort  # noqa: E402  (the modules below read __version__)
from equidmri.dmri.io import load_dwi  # noqa: E402
from equidmri.methods import METHODS, get_method  # noqa: E402
from equidmri.recon.model import FODFFit, NetworkConfig, SHDModel  # noqa: E402
from equidmri.recon.pipeline import prepare  # noqa: E402
from equidmri.recon.train import TrainConfig  # noqa: E402

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
