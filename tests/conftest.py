"""Shared pytest fixtures: every test starts from the same random state (STYLE.md §6)."""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_rngs():
    torch.manual_seed(0)
    np.random.seed(0)
