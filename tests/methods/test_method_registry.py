"""Every registered method through the public API: ``get_method(name, gtab).fit(dwi, mask) -> FODFFit``."""

import math
import subprocess
import sys

import numpy as np
import pytest

from equidmri import FODFFit, get_method
from equidmri.dmri.gradients import find_shells, make_gtab
from equidmri.dmri.response import TissueResponses, estimate_responses
from equidmri.extras import MissingExtraError
from equidmri.methods import METHODS, find_method
from equidmri.methods.registry import SHD_TV_WEIGHT
from equidmri.sims.phantoms import make_phantom
from equidmri.sims.synthesis import fibre_signal, make_protocol

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
MAX_ANGLE_DEG = 10.0
PHANTOM_SIZE = 20  # voxels; MRtrix3's dhollander responses need the CSF voxels of a phantom this large
UNIFORM_SHAPE = (4, 4, 4)  # the learned methods train on a uniform single-fibre volume
FIBRE = np.array([0.36, 0.48, 0.8])  # unit, voxel-axis frame
EVALS = np.array([1.7e-3, 0.3e-3, 0.3e-3])  # mm²/s
# a few epochs, tiny widths: 20 steps of one 4³ patch; measured main-peak errors 1.3° for every learned method
# (seed 0, commit 84844d8; with 50 steps before the b=0 volumes left the WM-only refinement, 1.3–6.8°)
LEARNED_OPTIONS = {"epochs": 20, "widths": (4, 4, 4, 4), "patch_size": 4, "lr": 5e-3, "seed": 0}


@pytest.fixture(scope="module")
def protocol():
    return make_protocol(np.random.default_rng(0), n_b0=2, shells=(1000.0, 2000.0, 3000.0), directions_per_shell=40)


@pytest.fixture(scope="module")
def phantom(protocol):
    """A 20³ phantom at SNR 30, its responses, and the box around one of its single-fibre WM voxels (the iterative
    methods fit the box)."""
    volume = make_phantom(PHANTOM_SIZE, protocol, np.random.default_rng(1), snr=30.0)
    responses = estimate_responses(
        volume.dwi, make_gtab(protocol.bvals, protocol.bvecs), volume.mask, find_shells(protocol.bvals)
    )
    single = (volume.signal_fibres == 1) & (volume.tissue_fractions[..., 0] > 0.9) & volume.mask
    voxel = tuple(int(i) for i in np.argwhere(single)[0])
    box = np.zeros(volume.mask.shape, bool)
    box[tuple(slice(max(c - 2, 0), c + 3) for c in voxel)] = True
    return volume, responses, voxel, box & volume.mask


@pytest.fixture(scope="module")
def uniform():
    """Noiseless single fibre along FIBRE in every voxel (b=0 + 40 directions at b = 1000 and 2000 s/mm²), its
    gradient table and WM response."""
    protocol = make_protocol(np.random.default_rng(0), n_b0=2, shells=(1000.0, 2000.0), directions_per_shell=40)
    signal = fibre_signal(
        protocol,
        FIBRE[None, None] / np.linalg.norm(FIBRE),
        np.ones((1, 1)),
        np.array([[[EVALS[0], EVALS[1]]]]),
        np.zeros(1),
        np.zeros(1),
        100.0,
    )
    dwi = np.broadcast_to(signal[0], UNIFORM_SHAPE + signal.shape[1:]).copy()
    responses = TissueResponses(tissues=("wm",), shells=[1000.0, 2000.0], evals=np.stack([EVALS] * 2)[None], s0=[100.0])
    return dwi, make_gtab(protocol.bvals, protocol.bvecs), responses


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cosine = abs(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return math.degrees(math.acos(min(1.0, cosine)))


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_every_method_fits_and_finds_a_single_fibre(method, protocol, phantom, uniform):
    if not method.available():
        pytest.skip(f"{method.name} {method.unavailable()}")
    if method.learned:
        dwi, gtab, responses = uniform
        mask, voxel, truth = np.ones(UNIFORM_SHAPE, bool), (1, 2, 1), FIBRE
        fit = get_method(method.name, gtab, responses, **LEARNED_OPTIONS).fit(dwi, mask)
    else:
        volume, responses, voxel, box = phantom
        gtab = make_gtab(protocol.bvals, protocol.bvecs)
        mask, truth = (volume.mask if method.own_responses else box), volume.peak_dirs[voxel][0]
        fit = get_method(method.name, gtab, responses).fit(volume.dwi, mask)
        dwi = volume.dwi
    assert isinstance(fit, FODFFit)
    k = (fit.lmax + 1) * (fit.lmax + 2) // 2
    assert fit.shm_coeff.shape == dwi.shape[:3] + (k,) and fit.fodf_sh.shape[:3] == dwi.shape[:3]
    assert fit.fractions.shape == dwi.shape[:3] + (len(fit.tissues),)
    assert np.all(fit.shm_coeff[~mask] == 0)
    dirs, values = fit.peaks()
    assert values[voxel][0] > 0
    assert _angle_deg(dirs[voxel][0], truth) < MAX_ANGLE_DEG


def test_responses_are_estimated_inside_the_mask_when_not_given(phantom, protocol):
    volume, responses, voxel, _ = phantom
    fit = get_method("CSD (lmax 8)", make_gtab(protocol.bvals, protocol.bvecs)).fit(volume.dwi, volume.mask)
    given = get_method("CSD (lmax 8)", make_gtab(protocol.bvals, protocol.bvecs), responses).fit(
        volume.dwi, volume.mask
    )
    np.testing.assert_allclose(fit.shm_coeff, given.shm_coeff, rtol=1e-6, atol=1e-9)


def test_names_are_case_insensitive_and_csd_takes_any_even_lmax():
    assert find_method("shd-tv").name == "SHD-TV"
    assert find_method("csd (LMAX 10)").options == {"lmax": 10}
    with pytest.raises(ValueError, match="unknown method 'SHD-TTV'"):
        find_method("SHD-TTV")


def test_shd_and_shd_tv_share_the_network_and_differ_by_the_tv_weight_only():
    shd, shd_tv = (get_method(name, None) for name in ("SHD", "SHD-TV"))
    assert shd.network_config == shd_tv.network_config and shd.network_config.model == "shd"
    assert (shd.train_config.weights.tv, shd_tv.train_config.weights.tv) == (0.0, SHD_TV_WEIGHT)
    assert shd.train_config.weights.nn == shd_tv.train_config.weights.nn


def test_options_replace_single_settings_and_unknown_options_are_refused():
    method = get_method("RT-ESD", None, epochs=3, widths=[2, 2], lambda_tv=0.1)
    assert method.train_config.epochs == 3 and method.network_config.widths == (2, 2)
    assert method.network_config.model == "rt-esd" and method.train_config.weights.tv == 0.1
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['epoch'\]"):
        get_method("SHD", None, epoch=3)


def test_the_table_is_read_without_torch_or_dipy():
    code = (
        "import sys; from equidmri.methods import METHODS, find_method; "
        "[(m.name, m.summary, m.extra, m.available()) for m in METHODS]; find_method('csd (lmax 4)'); "
        "print(sorted(n for n in ('torch', 'dipy', 'numpy', 'healpy') if n in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_msmt_csd_needs_the_baselines_extra(monkeypatch):
    msmt = find_method("MSMT-CSD")
    assert msmt.extra == "baselines" and msmt.model_class.__name__ == "MSMTCSDMethod"
    monkeypatch.setitem(sys.modules, "cvxpy", None)  # cvxpy is not found
    assert not msmt.available()
    assert msmt.unavailable() == "needs cvxpy, which is not installed: pip install 'equidmri[baselines]'"
    with pytest.raises(MissingExtraError, match=r"'MSMT-CSD' needs cvxpy.*equidmri\[baselines\]"):
        get_method("MSMT-CSD", None)


def test_a_method_without_its_executable_is_refused_naming_it(monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert find_method("MRtrix3 CSD").unavailable() == "needs dwi2fod, which is not on PATH"
    with pytest.raises(RuntimeError, match="'MRtrix3 CSD' needs dwi2fod, which is not on PATH"):
        get_method("MRtrix3 CSD", None)


def test_an_lmax_variant_keeps_the_family_s_fields():
    variant = find_method("CSD (lmax 4)")
    assert variant.name == "CSD (lmax 4)" and variant.builder == find_method("CSD (lmax 8)").builder
    assert variant.resolutions == find_method("CSD (lmax 8)").resolutions
