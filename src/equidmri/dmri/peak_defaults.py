"""The defaults of peak extraction (:func:`equidmri.dmri.peaks.find_peaks`), in a module without dipy.

The command line's help reads them here without importing dipy; :mod:`equidmri.dmri.peaks` re-exports them.
"""

RELATIVE_PEAK_THRESHOLD = 0.5  # fraction of the fODF range; dipy's `peak_directions` default
MIN_SEPARATION_ANGLE = 25.0  # degrees; dipy's `peak_directions` default
NPEAKS = 3  # peaks kept per voxel; MRtrix3 `sh2peaks -num` default
MAX_SEPARATION_ANGLE = 90.0  # degrees; the largest angle between two axes (dipy's documented range)
# Fewest mask voxels for which find_peaks(jobs > 1) starts worker processes. dipy's search costs about 30 us
# per voxel in Python; starting 2 joblib (loky) workers and importing dipy in them about 1.2 s (measured on
# 2 cores, 229 280 voxels: 8.5 s in turn, 4.4 s in 2 new processes, 3.3 s in warm ones)
PARALLEL_MIN_VOXELS = 100_000
