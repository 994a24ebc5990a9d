"""The evaluation protocol's constants, in a module without numpy, so that ``equidmri evaluate --help`` reads them.

:mod:`equidmri.eval.metrics`, :mod:`equidmri.eval.agreement` and :mod:`equidmri.eval.peak_files` use them.
"""

CONE_DEG = 25.0  # degrees; matching cone (Daducci et al., IEEE TMI 33(2), 2014; SHD paper App. D)
THRESHOLD_VALUES = tuple(round(0.05 * k, 2) for k in range(1, 20))  # relative peak amplitudes 0.05, 0.10, ..., 0.95
# (SHD paper, DiSCo); eval.metrics.THRESHOLDS is this as an array
SH_BASES = ("tournier07", "descoteaux07")  # bases of a predicted fODF file, legacy=False both; MRtrix3 uses tournier07
