"""Tests of the phantom generator: signal model, ground truth consistency, shapes, frames, files."""

import numpy as np
import pytest
from dipy.core.gradients import gradient_table
from dipy.reconst.dti import TensorModel
from dipy.sims.voxel import multi_tensor

from equidmri.dmri.io import load_dwi, load_nifti_volume, voxel_to_world_rotation
from equidmri.sims.dataset import FILES, VOLUMES, series_paths, write_phantom_set
from equidmri.sims.phantoms import N_PEAKS, make_phantom
from equidmri.sims.synthesis import GM_DIFFUSIVITY, fibre_signal, low_resolution, make_protocol

SIZE = 16  # voxels


@pytest.fixture(scope="module")
def protocol():
    return make_protocol(np.random.default_rng(0), directions_per_shell=30)


@pytest.fixture(scope="module")
def clean(protocol):
    return make_phantom(SIZE, protocol, np.random.default_rng(1), snr=None)


def test_signal_equals_dipy_multi_tensor(protocol):
    rng = np.random.default_rng(2)
    dirs = rng.normal(size=(1, 2, 3))
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    evals = np.array([[[1.7e-3, 0.3e-3], [1.5e-3, 0.2e-3]]])
    ours = fibre_signal(protocol, dirs, np.array([[0.5, 0.3]]), evals, np.array([0.2]), np.array([0.0]), 100.0)
    theta = np.degrees(np.arccos(dirs[0, :, 2]))
    phi = np.degrees(np.arctan2(dirs[0, :, 1], dirs[0, :, 0]))
    mevals = np.array([[1.7e-3, 0.3e-3, 0.3e-3], [1.5e-3, 0.2e-3, 0.2e-3], [GM_DIFFUSIVITY] * 3])
    gtab = gradient_table(protocol.bvals, bvecs=protocol.bvecs)
    reference, _ = multi_tensor(
        gtab, mevals, S0=100.0, angles=[*zip(theta, phi), (0, 0)], fractions=[50, 30, 20], snr=None
    )
    np.testing.assert_allclose(ours[0], reference, rtol=1e-5)


def test_noise_free_single_fibre_tensor_points_along_ground_truth(protocol, clean):
    single = (clean.signal_fibres == 1) & (clean.tissue_fractions[..., 0] > 0.5)
    assert single.sum() > 50
    gtab = gradient_table(protocol.bvals, bvecs=protocol.bvecs)
    evecs = TensorModel(gtab).fit(clean.dwi[single]).evecs[..., 0]
    cosines = np.abs((evecs * clean.peak_dirs[single][:, 0]).sum(-1))
    assert np.degrees(np.arccos(np.clip(cosines, 0, 1))).max() < 1.0


def test_fractions_sum_to_one_and_ground_truth_is_consistent(clean):
    total = clean.tissue_fractions.sum(-1)
    np.testing.assert_allclose(total[clean.mask], 1.0, atol=1e-9)
    assert np.all(total[~clean.mask] == 0) and np.all(clean.tissue_fractions >= -1e-12)
    assert clean.peak_dirs.shape == (SIZE,) * 3 + (N_PEAKS, 3)
    assert np.all(clean.peak_fractions.sum(-1) <= clean.tissue_fractions[..., 0] + 1e-9)
    norms = np.linalg.norm(clean.peak_dirs, axis=-1)
    np.testing.assert_allclose(norms[clean.peak_fractions > 0], 1.0, atol=1e-9)
    assert np.all(norms[clean.peak_fractions == 0] == 0)
    assert np.all(np.diff(clean.peak_fractions, axis=-1) <= 0)  # by decreasing fraction
    counts = clean.description["voxels_by_fibre_count"]
    assert counts[2] > 0 and counts[0] > 0  # crossings and isotropic voxels exist


def test_low_resolution_keeps_b0s_and_29_lowest_shell_directions(protocol):
    index = low_resolution(protocol, np.random.default_rng(0))
    low = protocol.select(index)
    assert (low.bvals == 0).sum() == 4 and (low.bvals == 1000).sum() == 29 and low.bvals.size == 33


def test_written_set_round_trips_frames(tmp_path):
    write_phantom_set(tmp_path, seed=3, size=SIZE, snr=None)
    assert all((tmp_path / v / f).is_file() for v in VOLUMES for f in FILES)
    folder = tmp_path / "test"
    data = load_dwi(*series_paths(folder, "high"), folder / "mask.nii.gz")
    gt, affine = load_nifti_volume(folder / "gt_peaks.nii.gz")
    assert np.linalg.det(affine[:3, :3]) > 0  # FSL bvecs have x negated: load_dwi must undo it
    gt_voxel = gt.reshape(*gt.shape[:3], -1, 3) @ voxel_to_world_rotation(affine)  # R^T u, row-wise
    fractions = np.asarray(load_nifti_volume(folder / "gt_fractions.nii.gz")[0])
    tissue = np.asarray(load_nifti_volume(folder / "tissue_fractions.nii.gz")[0])
    single = data.mask & np.isclose(fractions[..., 0], tissue[..., 0], atol=1e-6) & (tissue[..., 0] > 0.5)
    single &= fractions[..., 1] == 0
    assert single.sum() > 20
    evecs = TensorModel(data.gtab()).fit(data.dwi[single]).evecs[..., 0]
    cosines = np.abs((evecs * gt_voxel[single][:, 0]).sum(-1))
    # a voxel may hold two merged fibres < 25 degrees apart: the median, not every voxel, must be exact
    assert np.median(np.degrees(np.arccos(np.clip(cosines, 0, 1)))) < 1.0
    low = load_dwi(*series_paths(folder, "low"))
    assert low.dwi.shape[-1] == 33
    for volume in range(4, 33):  # each low-resolution volume is a volume of the high-resolution series
        same = np.flatnonzero(np.all(np.isclose(data.bvecs, low.bvecs[volume]), axis=1))
        assert same.size == 1 and np.array_equal(data.dwi[..., same[0]], low.dwi[..., volume])


def test_existing_outputs_need_force(tmp_path):
    write_phantom_set(tmp_path, seed=0, size=8, snr=30.0)
    with pytest.raises(FileExistsError):
        write_phantom_set(tmp_path, seed=0, size=8, snr=30.0)


def test_true_fodf_has_the_fibre_fractions_as_integral_and_its_peaks_on_the_fibres(clean):
    from equidmri.dmri.peaks import find_peaks

    sh = clean.fodf_sh(8)
    assert sh.shape == clean.mask.shape + (45,) and sh.dtype == np.float32
    np.testing.assert_allclose(sh[..., 0] * np.sqrt(4 * np.pi), clean.peak_fractions.sum(-1), atol=1e-6)
    single = (clean.peak_fractions[..., 0] > 0.3) & (clean.peak_fractions[..., 1] == 0)
    assert single.sum() > 10
    dirs, _ = find_peaks(sh, single, npeaks=1)
    cosines = np.abs((dirs[single][:, 0] * clean.peak_dirs[single][:, 0]).sum(-1))
    assert np.degrees(np.arccos(np.clip(cosines, 0, 1))).max() < 3.0  # the 1445-vertex peak sphere's spacing
