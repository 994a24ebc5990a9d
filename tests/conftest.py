"""Shared pytest fixtures: every test starts from the same random state (STYLE.md §6)."""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_rngs():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def float64():
    """Build modules with float64 geometry and parameters (exact-algebra tests), then restore the default."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="session")
def small_64d_otsu_voxels() -> int:
    """Voxels of the median_otsu mask of dipy's small_64D (DW volumes, median radius 2, one pass), measured.

    dipy's ``median_otsu`` thresholds with scikit-image's ``threshold_otsu`` when scikit-image is installed (the
    ``bench`` extra) and with its own ``otsu`` otherwise; the two differ by one low-FA voxel here.
    """
    import dipy.segment.mask

    return 302 if dipy.segment.mask.otsu.__module__.startswith("skimage") else 303
