"""Calibration of the synthesis: shells, tissue masks, per-shell tensors, GM/CSF diffusivity and SNR, checked
against phantoms of known tissue parameters (equidmri.sims) and dipy's real volumes."""

import numpy as np
import pytest

from equidmri.data import load_real_volume
from equidmri.dmri.gradients import find_shells
from equidmri.dmri.io import DWIData
from equidmri.sims.phantoms import make_phantom
from equidmri.sims.synthesis import CSF_DIFFUSIVITY, GM_DIFFUSIVITY, make_protocol
from equidmri.synth.calibration import MIN_BIN_VOLUMES, calibrate, calibration_shells, segment_tissues
from equidmri.synth.synthesis import synthesize

LAMBDA_PAR, LAMBDA_PERP = 1.7e-3, 0.3e-3  # mm²/s, every bundle of the test phantoms
SHELLS = (1000.0, 2000.0, 3000.0)  # s/mm²
SIZE = 24  # voxels


def phantom_data(snr, seed=0):
    """A phantom whose bundles all have (λ∥, λ⊥) = (1.7, 0.3)e-3 mm²/s, with its true mask, as DWIData."""
    rng = np.random.default_rng(seed)
    protocol = make_protocol(rng, shells=SHELLS, directions_per_shell=30)
    phantom = make_phantom(SIZE, protocol, rng, snr=snr, lambda_par=(LAMBDA_PAR,) * 2, lambda_perp=(LAMBDA_PERP,) * 2)
    return DWIData(
        dwi=phantom.dwi, affine=np.eye(4), bvals=protocol.bvals, bvecs=protocol.bvecs, mask=phantom.mask,
        valid=np.ones(phantom.mask.shape, dtype=bool), n_nonfinite_voxels=0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def high_snr():
    return calibrate(phantom_data(snr=200.0))


def test_calibration_recovers_the_phantom_wm_tensors_on_every_shell(high_snr):
    assert high_snr.wm_lambda_par.shape[1] == len(SHELLS) and high_snr.wm_lambda_par.shape[0] > 100
    # medians over the FA > 0.7 voxels (border voxels with some GM pull the low tail down): 3 % / 5 %
    np.testing.assert_allclose(np.median(high_snr.wm_lambda_par, axis=0), LAMBDA_PAR, rtol=0.03)
    np.testing.assert_allclose(np.median(high_snr.wm_lambda_perp, axis=0), LAMBDA_PERP, rtol=0.05)
    # each voxel's principal direction agrees across shells (the same fibre fitted three times)
    cosines = np.abs(np.einsum("ws,ws->w", high_snr.wm_dirs[:, 0], high_snr.wm_dirs[:, -1]))
    assert np.median(cosines) > np.cos(np.radians(5.0))


def test_calibration_recovers_the_phantom_gm_and_csf_diffusivity(high_snr):
    assert high_snr.sources == {"gm": "eroded", "csf": high_snr.sources["csf"]}
    np.testing.assert_allclose(high_snr.gm_md.mean(0), GM_DIFFUSIVITY, rtol=0.03)
    # CSF at b=1000 (at higher b its signal nears the noise floor and the apparent MD falls)
    np.testing.assert_allclose(high_snr.csf_md[:, 0].mean(), CSF_DIFFUSIVITY, rtol=0.05)


@pytest.fixture(scope="module")
def snr_30():
    return phantom_data(snr=30.0, seed=1)


def test_snr_from_piesno_on_a_phantom_with_background(snr_30):
    mask = snr_30.mask.copy()
    stats = calibrate(snr_30)
    np.testing.assert_array_equal(snr_30.mask, mask)  # the caller's mask is left as it was
    assert stats.snr_method == "piesno"
    assert stats.snr == pytest.approx(30.0, rel=0.1)


def test_snr_from_fit_residuals_on_a_crop_without_background(snr_30):
    inner = (slice(6, 18), slice(6, 18), slice(6, 18))  # inside the ellipsoidal mask: no background
    crop = DWIData(
        dwi=np.ascontiguousarray(snr_30.dwi[inner]), affine=np.eye(4), bvals=snr_30.bvals, bvecs=snr_30.bvecs,
        mask=snr_30.mask[inner], valid=snr_30.valid[inner], n_nonfinite_voxels=0,
    )  # fmt: skip
    stats = calibrate(crop)
    assert stats.snr_method == "dti-residual"
    assert stats.snr == pytest.approx(30.0, rel=0.25)


def test_calibration_shells_keep_real_shells():
    protocol = make_protocol(np.random.default_rng(0), shells=SHELLS, directions_per_shell=20)
    shells = calibration_shells(protocol.bvals)
    np.testing.assert_allclose(shells.bvals, SHELLS)
    np.testing.assert_array_equal(shells.index, find_shells(protocol.bvals).index)


@pytest.mark.filterwarnings("ignore:There is overlap in clustering")
def test_calibration_shells_bin_q_space_b_values():
    bvals = load_real_volume("small_101D").bvals
    shells = calibration_shells(bvals)
    assert len(find_shells(bvals).bvals) > 20  # q-space: many distinct b-values
    assert 3 <= shells.bvals.size <= bvals.size // MIN_BIN_VOLUMES
    assert np.all(shells.n_directions >= MIN_BIN_VOLUMES)
    assert np.all(np.diff(shells.bvals) > 0)
    assert np.all((shells.index >= 0) == (bvals > 50))
    upper = [bvals[shells.index == s].max() for s in range(shells.bvals.size)]
    lower = [bvals[shells.index == s].min() for s in range(shells.bvals.size)]
    assert all(hi < lo for hi, lo in zip(upper[:-1], lower[1:]))  # bins are consecutive b-value ranges


def test_calibration_shells_refuse_a_bin_size_below_one():
    with pytest.raises(ValueError, match="min_volumes must be >= 1"):
        calibration_shells(np.array([0.0, 1000.0]), min_volumes=0)


def test_segmentation_erodes_gm_and_keeps_a_tiny_csf_uneroded():
    shape = (11, 11, 11)
    fa, md = np.full(shape, 0.5), np.full(shape, 0.8e-3)
    fa[2:9, 2:9, 2:9] = 0.1  # a 7³ GM block
    fa[0, 0, :2], md[0, 0, :2] = 0.05, 3.0e-3  # two CSF voxels at the border
    fa[10, 10, 10] = 0.9  # one WM voxel
    masks = segment_tissues(fa, md, np.ones(shape, dtype=bool))
    assert masks["gm"].sum() == 5**3 and masks["eroded"]["gm"]
    assert masks["csf"].sum() == 2 and not masks["eroded"]["csf"]
    assert masks["wm"].sum() == 1 and masks["wm"][10, 10, 10]


def test_segmentation_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="share a shape"):
        segment_tissues(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), np.ones((2, 2, 1), dtype=bool))


def test_small_25_without_gm_or_csf_voxels_uses_the_default_diffusivities(caplog):
    stats = calibrate(load_real_volume("small_25"))  # b=2000 only: no voxel passes the b≈1000 GM/CSF thresholds
    assert stats.sources == {"gm": "default", "csf": "default"}
    assert "no gm voxel" in caplog.text and "no csf voxel" in caplog.text
    np.testing.assert_array_equal(stats.gm_md, [[GM_DIFFUSIVITY]])
    np.testing.assert_array_equal(stats.csf_md, [[CSF_DIFFUSIVITY]])
    assert stats.summary()["voxels"] == {"wm": stats.wm_lambda_par.shape[0], "gm": 0, "csf": 0}


def test_calibrate_refuses_a_volume_without_white_matter():
    protocol = make_protocol(np.random.default_rng(0), n_b0=1, shells=(1000.0,), directions_per_shell=20)
    gm_only = (100.0 * np.exp(-protocol.bvals * GM_DIFFUSIVITY)).astype(np.float32)
    flat = DWIData(
        dwi=np.broadcast_to(gm_only, (4, 4, 4, gm_only.size)).copy(), affine=np.eye(4), bvals=protocol.bvals,
        bvecs=protocol.bvecs, mask=None, valid=np.ones((4, 4, 4), dtype=bool), n_nonfinite_voxels=0,
    )  # fmt: skip
    with pytest.raises(ValueError, match="no single-fibre white matter"):
        calibrate(flat)


def test_calibrate_refuses_a_mask_of_another_shape():
    with pytest.raises(ValueError, match="mask must have shape"):
        calibrate(load_real_volume("small_25"), mask=np.ones((2, 2, 2), dtype=bool))


def test_without_background_or_residual_the_snr_is_unknown_and_must_be_given(caplog):
    rng = np.random.default_rng(2)
    protocol = make_protocol(rng, n_b0=1, shells=(1000.0,), directions_per_shell=6)  # 7 volumes, 7 parameters
    phantom = make_phantom(16, protocol, rng, snr=30.0, lambda_par=(LAMBDA_PAR,) * 2, lambda_perp=(LAMBDA_PERP,) * 2)
    inner = (slice(4, 12),) * 3  # no background
    data = DWIData(
        dwi=np.ascontiguousarray(phantom.dwi[inner]), affine=np.eye(4), bvals=protocol.bvals, bvecs=protocol.bvecs,
        mask=phantom.mask[inner], valid=np.ones((8, 8, 8), dtype=bool), n_nonfinite_voxels=0,
    )  # fmt: skip
    stats = calibrate(data)
    assert stats.snr_method == "none" and np.isnan(stats.snr) and "noise cannot be estimated" in caplog.text
    with pytest.raises(ValueError, match="SNR could not be estimated"):
        synthesize(stats, "syn", 10, np.random.default_rng(0))
    assert synthesize(stats, "syn", 10, np.random.default_rng(0), snr=30.0).snr == 30.0


def test_tissue_statistics_are_read_only_and_checked(high_snr):
    with pytest.raises(ValueError, match="read-only"):
        high_snr.wm_lambda_par[0, 0] = 0.0
    fields = {name: getattr(high_snr, name) for name in high_snr.__dataclass_fields__}
    with pytest.raises(ValueError, match="at least one WM voxel"):
        type(high_snr)(**{**fields, "wm_lambda_par": np.zeros((0, 3)), "wm_lambda_perp": np.zeros((0, 3))})
    with pytest.raises(ValueError, match="gm_md must be"):
        type(high_snr)(**{**fields, "gm_md": np.zeros((4, 2))})
    with pytest.raises(ValueError, match="must match the shells"):
        type(high_snr)(**{**fields, "bvals": high_snr.bvals[:-1]})
