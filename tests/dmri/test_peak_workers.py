"""The peak search's worker processes started early (equidmri.dmri.peak_workers)."""

import sys

import nibabel as nib
import numpy as np
from joblib import Parallel, delayed

from equidmri.dmri import peak_workers
from equidmri.dmri.peak_defaults import PARALLEL_MIN_VOXELS


def _searches_ready() -> bool:
    return "equidmri.dmri.peaks" in sys.modules


def test_volume_voxels_reads_the_header_alone(tmp_path):
    path = tmp_path / "dwi.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 7), np.float32), np.eye(4)), path)
    assert peak_workers.volume_voxels(path) == 120
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti")
    assert peak_workers.volume_voxels(tmp_path / "broken.nii.gz") is None
    assert peak_workers.volume_voxels(tmp_path / "missing.nii.gz") is None


def test_workers_start_only_where_find_peaks_would_use_them():
    assert peak_workers.start_peak_workers(1, 10 * PARALLEL_MIN_VOXELS) is None  # one job: this process
    assert peak_workers.start_peak_workers(2, PARALLEL_MIN_VOXELS - 1) is None  # too few voxels for workers
    assert peak_workers.start_peak_workers(2, None) is None  # unreadable header


def test_started_workers_hold_the_peak_search_for_find_peaks():
    thread = peak_workers.start_peak_workers(2, PARALLEL_MIN_VOXELS)
    assert thread is not None
    thread.join(timeout=120)
    assert not thread.is_alive()
    # find_peaks's Parallel(n_jobs=2) gets the same (reused) processes, the search already imported in them
    assert any(Parallel(n_jobs=2)(delayed(_searches_ready)() for _ in range(4)))
