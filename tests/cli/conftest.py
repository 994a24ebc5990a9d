"""Session fixtures of the command-line tests: input series on disk and deconv runs to inspect."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_inputs import TINY_NET, Inputs, run_main, small_64d_crop_series, synthetic_series


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Inputs:
    """The synthetic series with an all-ones mask (written once per session; tests must not modify it)."""
    return synthetic_series(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def small_64d_crop(tmp_path_factory) -> Inputs:
    """Four axial slices of dipy's small_64D (oblique det < 0 affine, no mask)."""
    return small_64d_crop_series(tmp_path_factory.mktemp("small_64d"))


@pytest.fixture(scope="session")
def synthetic_run(synthetic, tmp_path_factory) -> Path:
    """Output directory of ``deconv`` on the synthetic series (2 epochs, tiny network); read-only for tests."""
    out = tmp_path_factory.mktemp("synthetic_run") / "out"
    assert run_main(["deconv", *synthetic.args(), "--out", str(out), *TINY_NET]) == 0
    return out


@pytest.fixture(scope="session")
def crop_run(small_64d_crop, tmp_path_factory) -> Path:
    """Output directory of ``deconv`` on the small_64D crop without a mask; read-only for tests."""
    out = tmp_path_factory.mktemp("crop_run") / "out"
    assert run_main(["deconv", *small_64d_crop.args(), "--out", str(out), *TINY_NET]) == 0
    return out
