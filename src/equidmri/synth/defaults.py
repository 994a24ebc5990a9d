"""The synthesis modes and their descriptions, in a module without numpy or dipy (the command line's help reads
them here; :mod:`equidmri.synth.synthesis` implements them)."""

MODES = {  # name -> how the WM tensors and the GM/CSF diffusivities of each synthetic voxel are drawn
    "syn": "WM tensors drawn from a log-normal fitted to the subject's calibrated per-shell (λ∥, λ⊥); "
    "GM and CSF at the mean of their voxels",
    "sample-mean": "WM tensors resampled from the subject's calibrated single-fibre voxels; GM and CSF at the mean "
    "of their voxels",
    "sample": "WM tensors resampled from the subject's calibrated voxels; GM and CSF diffusivities resampled from "
    "their voxels (not averaged)",
    "random-wm": "WM tensors from generic uniform ranges, the same on every shell (the control that should fail); "
    "GM and CSF at the mean of their voxels",
}
DEFAULT_MODE = "syn"
MAX_FIBRES = 3  # fibre populations per synthetic voxel: 1 to 3, as the paper and DiSCo
