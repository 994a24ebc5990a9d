"""The phantom set's acquisition defaults and file layout, in a module without numpy or dipy.

:mod:`equidmri.sims.synthesis` and :mod:`equidmri.sims.dataset` use them (and re-export them); the command
line's help reads them here.
"""

N_B0 = 4  # b=0 volumes (DiSCo has 4; Rafael-Patino et al., Front. Neuroinform. 2021)
SHELLS = (1000.0, 2000.0, 3000.0)  # s/mm²; DiSCo's own b-values were not established here (issue #3 default)
DIRECTIONS_PER_SHELL = 90  # as DiSCo
LOW_RES_DIRECTIONS = 29  # of the lowest shell: the SHD paper's clinical protocol (§4.2.1)

VOLUMES = ("train", "val", "test")
RESOLUTIONS = {"high": "", "low": "_low"}  # file-name suffix of each angular resolution
FILES = (
    "dwi.nii.gz",
    "bvals",
    "bvecs",
    "dwi_low.nii.gz",
    "bvals_low",
    "bvecs_low",
    "mask.nii.gz",
    "gt_peaks.nii.gz",
    "gt_fractions.nii.gz",
    "tissue_fractions.nii.gz",
    "phantom.json",
)
