"""Tests of equidmri.extras: a missing optional dependency is one error naming the extra."""

import importlib.util
import sys

import numpy as np
import pytest

from equidmri.extras import MissingExtraError, extra_installed, require_extra


def test_require_extra_returns_an_installed_module():
    assert require_extra("json", "baselines", "anything").dumps([1]) == "[1]"


def test_require_extra_names_the_package_and_the_extra():
    message = r"the MNIST stand-in needs scikit-learn, which is not installed: pip install 'equidmri\[bench\]'"
    with pytest.raises(MissingExtraError, match=message):
        require_extra("equidmri_no_such_module", "bench", "the MNIST stand-in", package="scikit-learn")


def test_msmt_csd_without_cvxpy_names_the_baselines_extra(monkeypatch):
    from dipy.core.gradients import gradient_table

    from equidmri.dmri.baselines import fit_msmt_csd
    from equidmri.dmri.response import TissueResponses

    monkeypatch.setitem(sys.modules, "cvxpy", None)  # import cvxpy now raises ImportError
    bvals = np.r_[0.0, np.full(6, 1000.0), np.full(6, 2000.0)]
    bvecs = np.vstack([np.zeros(3), np.tile(np.eye(3), (4, 1))])
    responses = TissueResponses(
        ("wm", "gm", "csf"),
        [1000.0, 2000.0],
        [[(1.7e-3, 3e-4, 3e-4)] * 2, [(8e-4,) * 3] * 2, [(3e-3,) * 3] * 2],
        [1.0, 1.0, 1.0],
    )
    with pytest.raises(MissingExtraError, match=r"dipy's MSMT-CSD needs cvxpy.*pip install 'equidmri\[baselines\]'"):
        fit_msmt_csd(np.ones((1, 1, 1, 13)), gradient_table(bvals, bvecs=bvecs), responses)


def test_extra_installed_finds_modules_without_importing_them(monkeypatch):
    assert extra_installed("baselines") == (importlib.util.find_spec("cvxpy") is not None)
    monkeypatch.setitem(sys.modules, "cvxpy", None)
    assert not extra_installed("baselines")
    with pytest.raises(ValueError, match="unknown extra 'gpu'"):
        extra_installed("gpu")
