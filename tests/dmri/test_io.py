"""Tests of equidmri.dmri.io: FSL/voxel/world frames, validated loading, atomic writers."""

import json
import math
import os

import nibabel as nib
import numpy as np
import pytest
from dipy.data import get_3shell_gtab, get_fnames
from dipy.reconst.dti import TensorModel
from dipy.sims.voxel import all_tensor_evecs, single_tensor

import equidmri.dmri.io as dmri_io
from equidmri.dmri.io import (
    DWIData,
    check_outputs_free,
    fsl_bvecs_to_voxel,
    load_dwi,
    load_fod,
    load_nifti_volume,
    prepare_out_dir,
    save_fod,
    save_json,
    save_nifti,
    save_peaks,
    voxel_bvecs_to_fsl,
    voxel_to_world_rotation,
)
from equidmri.sphere.sh import n_coeffs, sh_matrix

SMALL_64D = get_fnames(name="small_64D")
SMALL_64D_AFFINE = nib.load(SMALL_64D[0]).affine  # oblique and permuted, det -8


def _axis_rotation(axis, angle):
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def _oblique_affine(det_sign):
    """Oblique anisotropic affine (voxel 2 × 2.5 × 3 mm) with the requested determinant sign."""
    linear = _axis_rotation([1.0, 2.0, 3.0], 0.4) @ np.diag([2.0, 2.5, 3.0])
    if det_sign < 0:
        linear[:, 0] *= -1
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = linear, [-10.0, 20.0, 5.0]
    return affine


DET_POS_AFFINE = _oblique_affine(+1)


def _voxel_scheme():
    """b=0 plus the 64 b=1000 directions of dipy's 3-shell table (voxel-axis frame)."""
    gtab = get_3shell_gtab()
    keep = gtab.bvals < 1500
    return np.round(gtab.bvals[keep]), gtab.bvecs[keep]


def _write_inputs(folder, affine, dwi, bvals, bvecs_voxel, mask=None):
    """Write a DWI series, FSL bvals/bvecs (converted from the voxel frame) and an optional mask."""
    paths = {"dwi": folder / "dwi.nii.gz", "bvals": folder / "dwi.bval", "bvecs": folder / "dwi.bvec"}
    save_nifti(paths["dwi"], dwi, affine)
    np.savetxt(paths["bvals"], np.asarray(bvals)[None], fmt="%.6f")
    np.savetxt(paths["bvecs"], voxel_bvecs_to_fsl(bvecs_voxel, affine).T, fmt="%.12f")
    if mask is not None:
        paths["mask"] = folder / "mask.nii.gz"
        save_nifti(paths["mask"], mask, affine)
    return paths


def _snapshot(folder):
    return sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir())


# ---------------------------------------------------------------------------------------- frames
def test_fsl_bvecs_negate_x_when_det_positive():
    bvecs = np.array([[0.6, 0.8, 0.0], [np.nan, np.nan, np.nan]])
    out = fsl_bvecs_to_voxel(bvecs, DET_POS_AFFINE)
    np.testing.assert_array_equal(out[0], [-0.6, 0.8, 0.0])
    assert np.all(np.isnan(out[1]))
    np.testing.assert_array_equal(bvecs[0], [0.6, 0.8, 0.0])  # input untouched


def test_fsl_bvecs_unchanged_when_det_negative():
    bvecs = np.array([[0.6, 0.8, 0.0], [0.0, 0.6, -0.8]])
    np.testing.assert_array_equal(fsl_bvecs_to_voxel(bvecs, _oblique_affine(-1)), bvecs)
    np.testing.assert_array_equal(fsl_bvecs_to_voxel(bvecs, SMALL_64D_AFFINE), bvecs)


@pytest.mark.parametrize("affine", [DET_POS_AFFINE, SMALL_64D_AFFINE])
def test_voxel_bvecs_to_fsl_is_the_inverse(affine):
    bvecs = np.random.default_rng(1).normal(size=(10, 3))
    np.testing.assert_array_equal(voxel_bvecs_to_fsl(fsl_bvecs_to_voxel(bvecs, affine), affine), bvecs)


def test_frame_functions_reject_bad_input():
    with pytest.raises(ValueError, match=r"bvecs must have shape \(N, 3\), got \(3,\)"):
        fsl_bvecs_to_voxel(np.ones(3), DET_POS_AFFINE)
    with pytest.raises(ValueError, match=r"affine must be a finite \(4, 4\) array, got shape \(3, 3\)"):
        voxel_to_world_rotation(np.eye(3))
    with pytest.raises(ValueError, match=r"affine\[:3, :3\] must be invertible"):
        voxel_to_world_rotation(np.diag([1.0, 1.0, 0.0, 1.0]))


def test_world_rotation_of_small_64d_maps_voxel_axes_to_normalised_columns():
    rotation = voxel_to_world_rotation(SMALL_64D_AFFINE)
    columns = SMALL_64D_AFFINE[:3, :3] / np.linalg.norm(SMALL_64D_AFFINE[:3, :3], axis=0)
    # the header's normalised columns are orthogonal only to 2.6e-7 (float32 storage); R differs by 1.3e-7
    np.testing.assert_allclose(rotation @ np.eye(3), columns, rtol=0, atol=3e-7)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-14)
    assert np.linalg.det(rotation) == pytest.approx(-1.0, abs=1e-14)


def test_world_rotation_is_the_polar_factor_of_a_sheared_affine():
    affine = DET_POS_AFFINE.copy()
    affine[:3, :3] = affine[:3, :3] @ np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    rotation = voxel_to_world_rotation(affine)
    stretch = rotation.T @ affine[:3, :3]  # polar decomposition A = R P, P symmetric positive definite
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-14)
    np.testing.assert_allclose(stretch, stretch.T, atol=1e-13)
    assert np.all(np.linalg.eigvalsh(stretch) > 0)
    assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-14)


# ----------------------------------------------------------------------------------------- load
@pytest.mark.parametrize("affine", [DET_POS_AFFINE, SMALL_64D_AFFINE], ids=["det>0", "small_64D det<0"])
def test_known_fibre_comes_out_right_in_voxel_and_world_frames(tmp_path, affine):
    """DESIGN.md §6: a fibre along world direction w is found along Rᵀw in voxel frame and w in world files."""
    rotation = voxel_to_world_rotation(affine)
    world_fibre = np.array([0.48, 0.6, 0.64])
    voxel_fibre = rotation.T @ world_fibre
    bvals, bvecs = _voxel_scheme()
    gtab = get_3shell_gtab()
    keep = gtab.bvals < 1500
    signal = single_tensor(
        gtab, S0=100.0, evals=np.array([1.7e-3, 3e-4, 3e-4]), evecs=all_tensor_evecs(voxel_fibre), snr=None
    )[keep]
    paths = _write_inputs(tmp_path, affine, np.broadcast_to(signal, (2, 2, 1, signal.size)), bvals, bvecs)

    data = load_dwi(paths["dwi"], paths["bvals"], paths["bvecs"])
    principal = TensorModel(data.gtab()).fit(data.dwi.astype(np.float64)).evecs[..., :, 0]  # (2, 2, 1, 3)
    assert np.abs(principal @ voxel_fibre).min() == pytest.approx(1.0, abs=1e-7)
    assert np.abs(principal @ rotation.T @ world_fibre).min() == pytest.approx(1.0, abs=1e-7)
    raw = np.loadtxt(paths["bvecs"]).T  # reading the FSL file as if it were voxel frame
    if np.linalg.det(affine[:3, :3]) > 0:
        assert not np.allclose(raw[1:], bvecs[1:], atol=1e-3)

    save_peaks(
        tmp_path / "peaks.nii.gz", tmp_path / "values.nii.gz", principal[..., None, :], np.ones((2, 2, 1, 1)), affine
    )
    peaks, _ = load_nifti_volume(tmp_path / "peaks.nii.gz")
    assert np.abs(peaks.reshape(-1, 3) @ world_fibre).min() == pytest.approx(1.0, abs=1e-6)

    # band-limited delta at the voxel-frame fibre: its maximum K/(4π) must sit at w in the file
    delta = np.broadcast_to(sh_matrix(principal[0, 0, 0][None], 8, "descoteaux07")[0], (1, 1, 1, 45))
    save_fod(tmp_path / "fod.nii.gz", delta, affine)
    fod, _ = load_nifti_volume(tmp_path / "fod.nii.gz")
    mirrored = world_fibre * [-1.0, 1.0, 1.0]
    values = sh_matrix(np.stack([world_fibre, -world_fibre, mirrored]), 8, "tournier07") @ fod[0, 0, 0]
    np.testing.assert_allclose(values[:2], 45 / (4 * math.pi), rtol=1e-6)
    assert values[2] < 0.5 * values[0]


def test_load_dwi_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    bvals, bvecs = _voxel_scheme()
    dwi = rng.uniform(10.0, 100.0, size=(3, 4, 2, bvals.size)).astype(np.float32)
    mask = rng.uniform(size=(3, 4, 2)) > 0.5
    paths = _write_inputs(tmp_path, DET_POS_AFFINE, dwi, bvals, bvecs, mask=mask)
    data = load_dwi(paths["dwi"], paths["bvals"], paths["bvecs"], mask_path=paths["mask"])
    assert data.dwi.dtype == np.float32 and data.mask.dtype == bool
    np.testing.assert_array_equal(data.dwi, dwi)
    np.testing.assert_array_equal(data.mask, mask)
    np.testing.assert_allclose(data.affine, DET_POS_AFFINE, atol=1e-5)
    np.testing.assert_array_equal(data.bvals, bvals)
    np.testing.assert_allclose(data.bvecs, bvecs, atol=1e-11)  # voxel frame again after the FSL flip
    assert data.valid.all() and data.n_nonfinite_voxels == 0
    np.testing.assert_array_equal(data.gtab().b0s_mask, bvals == 0)


def test_load_small_64d_keeps_its_bvecs_and_zeroes_the_nan_b0_row():
    data = load_dwi(*SMALL_64D)
    file_bvecs = np.loadtxt(SMALL_64D[2])
    assert data.dwi.shape == (10, 10, 10, 65) and data.dwi.dtype == np.float32
    np.testing.assert_array_equal(data.bvecs[0], 0.0)  # the file has NaN there
    np.testing.assert_allclose(data.bvecs[1:], file_bvecs[1:], atol=1e-6)  # det < 0: no flip
    assert data.mask is None and data.valid.all()


def test_nonfinite_voxels_are_zeroed_counted_and_masked_out(tmp_path):
    bvals, bvecs = _voxel_scheme()
    dwi = np.full((3, 3, 2, bvals.size), 50.0, dtype=np.float32)
    dwi[0, 0, 0, 3], dwi[1, 2, 1, 0] = np.nan, np.inf
    paths = _write_inputs(tmp_path, DET_POS_AFFINE, dwi, bvals, bvecs, mask=np.ones((3, 3, 2), bool))
    with pytest.warns(UserWarning, match=r"2 voxel\(s\) of .*dwi.nii.gz hold NaN or Inf"):
        data = load_dwi(paths["dwi"], paths["bvals"], paths["bvecs"], mask_path=paths["mask"])
    assert data.n_nonfinite_voxels == 2
    assert np.count_nonzero(~data.valid) == 2 and not data.valid[0, 0, 0] and not data.valid[1, 2, 1]
    np.testing.assert_array_equal(data.mask, data.valid)
    np.testing.assert_array_equal(data.dwi[0, 0, 0], 0.0)
    assert data.dwi.sum() == pytest.approx(50.0 * bvals.size * 16)


def _replace_nifti(path, array, affine=DET_POS_AFFINE):
    os.remove(path)
    save_nifti(path, array, affine)


BAD_INPUTS = {
    "missing dwi": (lambda p: os.remove(p["dwi"]), FileNotFoundError, r"DWI file not found: .*dwi.nii.gz"),
    "missing bvals": (lambda p: os.remove(p["bvals"]), FileNotFoundError, r"bvals file not found"),
    "missing bvecs": (lambda p: os.remove(p["bvecs"]), FileNotFoundError, r"bvecs file not found"),
    "missing mask": (lambda p: os.remove(p["mask"]), FileNotFoundError, r"mask file not found"),
    "3D image": (
        lambda p: _replace_nifti(p["dwi"], np.ones((3, 3, 2))),
        ValueError,
        r"needs a 4D image \(X, Y, Z, N\), got shape \(3, 3, 2\)",
    ),
    "extra bval": (
        lambda p: np.savetxt(p["bvals"], np.r_[0, [1000] * 7][None]),
        ValueError,
        r"counts disagree: 8 b-values in .*dwi.bval, 7 b-vectors in .*dwi.bvec, 7 volumes in .*dwi.nii.gz",
    ),
    "missing bvec": (
        lambda p: np.savetxt(p["bvecs"], np.loadtxt(p["bvecs"])[:, :6]),
        ValueError,
        r"counts disagree: 7 b-values .* 6 b-vectors .* 7 volumes",
    ),
    "volume count": (
        lambda p: _replace_nifti(p["dwi"], np.ones((3, 3, 2, 6))),
        ValueError,
        r"counts disagree: 7 b-values .* 7 b-vectors .* 6 volumes",
    ),
    "non-unit bvec": (
        lambda p: np.savetxt(p["bvecs"], np.loadtxt(p["bvecs"]) * np.r_[1, 1, 1, 1.2, 1, 1, 1]),
        ValueError,
        r"1 volume\(s\) fail, index: norm = 3: 1\.2",
    ),
    "no b0": (lambda p: np.savetxt(p["bvals"], np.full((1, 7), 1000.0)), ValueError, r"no b=0 volume"),
    "bvals matrix": (
        lambda p: np.savetxt(p["bvals"], np.zeros((2, 7))),
        ValueError,
        r"must hold one row \(or column\) of N values, got shape \(2, 7\)",
    ),
    "bvecs 4 rows": (
        lambda p: np.savetxt(p["bvecs"], np.zeros((4, 7))),
        ValueError,
        r"must have 3 rows \(FSL\) or 3 columns, got shape \(4, 7\)",
    ),
    "garbage bvals": (lambda p: p["bvals"].write_text("0 1000 abc\n"), ValueError, r"could not read numbers from"),
    "mask shape": (
        lambda p: _replace_nifti(p["mask"], np.ones((3, 3, 3))),
        ValueError,
        r"mask must be 3D with the DWI's spatial shape \(3, 3, 2\), got \(3, 3, 3\)",
    ),
    "mask 4D": (
        lambda p: _replace_nifti(p["mask"], np.ones((3, 3, 2, 1))),
        ValueError,
        r"mask must be 3D with the DWI's spatial shape \(3, 3, 2\), got \(3, 3, 2, 1\)",
    ),
    "mask affine": (
        lambda p: _replace_nifti(p["mask"], np.ones((3, 3, 2)), np.diag([2.0, 2.0, 2.0, 1.0])),
        ValueError,
        r"mask affine differs from the DWI affine \(atol 0.0001 mm\)",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_inputs_raise_and_write_nothing(tmp_path, case):
    rng = np.random.default_rng(3)
    bvecs = rng.normal(size=(7, 3))
    bvecs /= np.linalg.norm(bvecs, axis=1, keepdims=True)
    paths = _write_inputs(
        tmp_path, DET_POS_AFFINE, np.ones((3, 3, 2, 7)), np.r_[0, [1000] * 6], bvecs, mask=np.ones((3, 3, 2), bool)
    )
    mutate, error, match = BAD_INPUTS[case]
    mutate(paths)
    before = _snapshot(tmp_path)
    with pytest.raises(error, match=match):
        load_dwi(paths["dwi"], paths["bvals"], paths["bvecs"], mask_path=paths["mask"])
    assert _snapshot(tmp_path) == before


def test_dwidata_checks_shapes():
    with pytest.raises(ValueError, match=r"bvals \(N,\) and bvecs \(N, 3\) need N = 4, got \(3,\) and \(4, 3\)"):
        DWIData(np.zeros((2, 2, 1, 4)), np.eye(4), np.zeros(3), np.zeros((4, 3)), None, np.ones((2, 2, 1), bool), 0)
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 2, 1\), got \(2, 2\)"):
        DWIData(
            np.zeros((2, 2, 1, 4)),
            np.eye(4),
            np.zeros(4),
            np.zeros((4, 3)),
            np.ones((2, 2), bool),
            np.ones((2, 2, 1), bool),
            0,
        )
    with pytest.raises(ValueError, match=r"dwi must have shape \(X, Y, Z, N\), got \(2, 4\)"):
        DWIData(np.zeros((2, 4)), np.eye(4), np.zeros(4), np.zeros((4, 3)), None, np.ones((2,), bool), 0)


def test_load_nifti_volume_names_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"NIfTI file not found: .*absent.nii.gz"):
        load_nifti_volume(tmp_path / "absent.nii.gz")


# ---------------------------------------------------------------------------------------- write
@pytest.mark.parametrize("affine", [DET_POS_AFFINE, SMALL_64D_AFFINE], ids=["det>0", "small_64D det<0"])
def test_save_fod_evaluates_at_world_directions_like_the_voxel_fodf(tmp_path, affine):
    rng = np.random.default_rng(4)
    fodf_sh = rng.normal(size=(1, 2, 1, n_coeffs(8)))
    directions = rng.normal(size=(50, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    save_fod(tmp_path / "fod.nii.gz", fodf_sh, affine)
    stored, stored_affine = load_nifti_volume(tmp_path / "fod.nii.gz")
    assert stored.dtype == np.float32 and stored.shape == fodf_sh.shape
    np.testing.assert_allclose(stored_affine, affine, atol=1e-5)
    rotation = voxel_to_world_rotation(affine)
    voxel_values = fodf_sh @ sh_matrix(directions, 8, "descoteaux07").T
    world_values = stored.astype(np.float64) @ sh_matrix(directions @ rotation.T, 8, "tournier07").T
    np.testing.assert_allclose(world_values, voxel_values, rtol=0, atol=1e-6 * np.abs(voxel_values).max())


@pytest.mark.parametrize("affine", [DET_POS_AFFINE, SMALL_64D_AFFINE], ids=["det>0", "small_64D det<0"])
def test_load_fod_inverts_save_fod(tmp_path, affine):
    fodf_sh = np.random.default_rng(5).normal(size=(2, 1, 1, n_coeffs(8)))
    save_fod(tmp_path / "fod.nii.gz", fodf_sh, affine)
    loaded, loaded_affine = load_fod(tmp_path / "fod.nii.gz")
    np.testing.assert_allclose(loaded, fodf_sh, rtol=0, atol=1e-5 * np.abs(fodf_sh).max())  # float32 on disk
    np.testing.assert_allclose(loaded_affine, affine, atol=1e-5)


def test_load_fod_rejects_a_3d_image(tmp_path):
    save_nifti(tmp_path / "fa.nii.gz", np.zeros((2, 2, 2)), DET_POS_AFFINE)
    with pytest.raises(ValueError, match=r"an SH image must be 4D \(X, Y, Z, K\), got shape \(2, 2, 2\)"):
        load_fod(tmp_path / "fa.nii.gz")


def test_save_fod_rejects_bad_coefficient_count(tmp_path):
    with pytest.raises(ValueError, match="44 is not the coefficient count"):
        save_fod(tmp_path / "fod.nii.gz", np.zeros((1, 1, 1, 44)), DET_POS_AFFINE)
    with pytest.raises(ValueError, match=r"fodf_sh must have shape \(X, Y, Z, K\), got \(1, 45\)"):
        save_fod(tmp_path / "fod.nii.gz", np.zeros((1, 45)), DET_POS_AFFINE)
    assert list(tmp_path.iterdir()) == []


def test_save_peaks_rotates_directions_and_keeps_zeros(tmp_path):
    rotation = voxel_to_world_rotation(SMALL_64D_AFFINE)
    peak_dirs = np.zeros((2, 1, 1, 2, 3))
    peak_dirs[0, 0, 0, 0] = [1.0, 0.0, 0.0]
    peak_dirs[1, 0, 0, 1] = [0.0, 0.6, 0.8]
    peak_values = np.array([1.0, 0.0, 0.0, 0.5]).reshape(2, 1, 1, 2)
    save_peaks(tmp_path / "peaks.nii.gz", tmp_path / "values.nii.gz", peak_dirs, peak_values, SMALL_64D_AFFINE)
    peaks, _ = load_nifti_volume(tmp_path / "peaks.nii.gz")
    values, _ = load_nifti_volume(tmp_path / "values.nii.gz")
    assert peaks.shape == (2, 1, 1, 6) and peaks.dtype == np.float32
    np.testing.assert_allclose(peaks[0, 0, 0], np.r_[rotation[:, 0], 0, 0, 0], atol=1e-7)
    np.testing.assert_allclose(peaks[1, 0, 0], np.r_[0, 0, 0, rotation @ [0.0, 0.6, 0.8]], atol=1e-7)
    np.testing.assert_array_equal(values, peak_values.astype(np.float32))


def test_save_peaks_checks_shapes_and_writes_neither_file_when_one_exists(tmp_path):
    with pytest.raises(ValueError, match=r"peak_dirs must be \(X, Y, Z, P, 3\) and peak_values \(X, Y, Z, P\)"):
        save_peaks(
            tmp_path / "p.nii.gz", tmp_path / "v.nii.gz", np.zeros((1, 1, 1, 2, 3)), np.zeros((1, 1, 1, 3)), np.eye(4)
        )
    (tmp_path / "v.nii.gz").write_text("existing")
    with pytest.raises(FileExistsError, match=r"v.nii.gz"):
        save_peaks(
            tmp_path / "p.nii.gz", tmp_path / "v.nii.gz", np.zeros((1, 1, 1, 2, 3)), np.zeros((1, 1, 1, 2)), np.eye(4)
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.nii.gz"]


def test_save_nifti_refuses_existing_unless_forced_and_leaves_no_temp(tmp_path):
    path = tmp_path / "mask.nii.gz"
    save_nifti(path, np.array([[[True, False]]]), np.eye(4))
    with pytest.raises(FileExistsError, match=r"output\(s\) already exist: .*mask.nii.gz; use --force to overwrite"):
        save_nifti(path, np.zeros((1, 1, 2)), np.eye(4))
    stored, _ = load_nifti_volume(path)
    np.testing.assert_array_equal(stored, [[[1, 0]]])  # bool stored as uint8, untouched by the refused write
    assert stored.dtype == np.uint8
    save_nifti(path, np.full((1, 1, 2), 7.5, dtype=np.float32), np.eye(4), force=True)
    np.testing.assert_array_equal(load_nifti_volume(path)[0], [[[7.5, 7.5]]])
    assert [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]


def test_failed_write_removes_temp_and_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "fod.nii.gz"
    save_nifti(path, np.ones((1, 1, 1)), np.eye(4))
    before = path.read_bytes()

    def broken_save(img, filename):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(dmri_io.nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_nifti(path, np.zeros((1, 1, 1)), np.eye(4), force=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fod.nii.gz"]


def test_save_nifti_rejects_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match=r"NIfTI path must end in .nii or .nii.gz, got .*out.mgz"):
        save_nifti(tmp_path / "out.mgz", np.zeros((1, 1, 1)), np.eye(4))


def test_save_json_converts_numpy_and_is_atomic(tmp_path):
    path = tmp_path / "run.json"
    save_json(path, {"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(3), "p": tmp_path / "f"})
    text = path.read_text()
    assert json.loads(text) == {"n": 3, "x": 0.5, "a": [0, 1, 2], "p": str(tmp_path / "f")}
    assert text.startswith('{\n  "n": 3,')  # indent 2
    with pytest.raises(FileExistsError, match="already exist"):
        save_json(path, {})
    with pytest.raises(TypeError, match="cannot write an object of type object to JSON"):
        save_json(tmp_path / "bad.json", {"o": object()})
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_check_outputs_free_lists_every_existing_path(tmp_path):
    for name in ("a.nii.gz", "b.json"):
        (tmp_path / name).write_text("x")
    paths = [tmp_path / "a.nii.gz", tmp_path / "new.nii.gz", tmp_path / "b.json"]
    with pytest.raises(FileExistsError, match=r"already exist: .*a.nii.gz, .*b.json; use --force"):
        check_outputs_free(paths, force=False)
    check_outputs_free(paths, force=True)


def test_prepare_out_dir(tmp_path):
    out = prepare_out_dir(tmp_path / "a" / "b", force=False)
    assert out.is_dir() and out == tmp_path / "a" / "b"
    assert prepare_out_dir(out, force=False) == out  # empty: fine
    (out / "fod.nii.gz").write_text("x")
    with pytest.raises(FileExistsError, match=r"b exists; use --force to overwrite"):
        prepare_out_dir(out, force=False)
    assert prepare_out_dir(out, force=True) == out
    with pytest.raises(FileExistsError, match=r"fod.nii.gz exists and is not a directory"):
        prepare_out_dir(out / "fod.nii.gz", force=True)


def test_save_npz_round_trips_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "arrays.npz"
    arrays = {"signals": np.arange(6, dtype=np.float32).reshape(2, 3), "mode": np.asarray("syn")}
    dmri_io.save_npz(path, arrays)
    with np.load(path) as archive:
        np.testing.assert_array_equal(archive["signals"], arrays["signals"])
        assert str(archive["mode"]) == "syn" and archive["signals"].dtype == np.float32
    with pytest.raises(FileExistsError, match="--force"):
        dmri_io.save_npz(path, {"other": np.zeros(1)})
    dmri_io.save_npz(path, {"other": np.zeros(1)}, force=True)
    assert np.load(path).files == ["other"]
    with pytest.raises(ValueError, match="must end in .npz"):
        dmri_io.save_npz(tmp_path / "arrays.npy", arrays)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrays.npz"]
