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
