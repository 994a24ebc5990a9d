"""equidmri: equivariant deep learning for diffusion MRI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("equidmri")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
