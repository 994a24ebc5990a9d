"""Optional dependencies: the pip extras that bring them, and one error that names the extra.

``pip install equidmri`` installs what ``deconv``, ``predict``, ``demo``, ``fa`` and ``evaluate`` need.
Dependencies used only by a baseline or a benchmark are extras (``pyproject.toml``):

- ``baselines``: cvxpy, the solver of dipy's MSMT-CSD (:func:`equidmri.dmri.baselines.fit_msmt_csd`);
- ``lesions``: e3nn, the Clebsch–Gordan products of the p×q-space layers (:mod:`equidmri.nn.layers.pq_space`)
  and the lesion segmentation network built on them;
- ``bench``: scikit-learn, whose bundled digits stand in for MNIST (:mod:`equidmri.sims.digits`),
  scikit-image, whose SSIM :mod:`equidmri.harmonize.metrics` reports, neuroCombat and pandas, the ComBat of
  :mod:`equidmri.harmonize.combat`, and the ``baselines`` and ``lesions`` extras.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

EXTRA_MODULES = {  # extra -> the top-level modules it installs (pyproject.toml [project.optional-dependencies])
    "baselines": ("cvxpy",),
    "bench": ("sklearn", "skimage", "neuroCombat", "pandas", "cvxpy", "e3nn"),
    "lesions": ("e3nn",),
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the pip extra that installs it."""


def extra_installed(extra: str) -> bool:
    """Whether every module of the extra ``extra`` can be imported; the modules are found, not imported.

    Raises
    ------
    ValueError
        If ``extra`` is not one of :data:`EXTRA_MODULES`.
    """
    if extra not in EXTRA_MODULES:
        raise ValueError(f"unknown extra {extra!r}; choose from {sorted(EXTRA_MODULES)}")
    return all(importlib.util.find_spec(module) is not None for module in EXTRA_MODULES[extra])


def require_extra(module: str, extra: str, purpose: str, package: str | None = None) -> ModuleType:
    """Import ``module``, or say which extra installs it.

    Parameters
    ----------
    module : str
        Importable name, e.g. ``"cvxpy"``.
    extra : str
        The equidmri extra that installs it, e.g. ``"baselines"``.
    purpose : str
        What needs it, for the message, e.g. ``"dipy's MSMT-CSD"``.
    package : str, optional
        Its name on PyPI where that differs from ``module`` (``"scikit-learn"`` for ``sklearn.datasets``).

    Returns
    -------
    ModuleType
        The imported module.

    Raises
    ------
    MissingExtraError
        If ``module`` cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{purpose} needs {package or module}, which is not installed: pip install 'equidmri[{extra}]'"
        ) from error
