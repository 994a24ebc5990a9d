"""The defaults of peak extraction (:func:`equidmri.dmri.peaks.find_peaks`), in a module without dipy.

The command line's help reads them here without importing dipy; :mod:`equidmri.dmri.peaks` re-exports them.
"""

RELATIVE_PEAK_THRESHOLD = 0.5  # fraction of the fODF range; dipy's `peak_directions` default
MIN_SEPARATION_ANGLE = 25.0  # degrees; dipy's `peak_directions` default
NPEAKS = 3  # peaks kept per voxel; MRtrix3 `sh2peaks -num` default
MAX_SEPARATION_ANGLE = 90.0  # degrees; the largest angle between two axes (dipy's documented range)
