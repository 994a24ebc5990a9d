"""Default and reference sizes of the U-Nets, in a module without torch.

:mod:`equidmri.nn.models.unet` builds the networks with them, and :class:`equidmri.recon.config.NetworkConfig`
and the command line's help read them without importing torch.
"""

DEFAULT_WIDTHS = (8, 16, 32, 64)  # channels per level; CPU-friendly, the reference code uses REFERENCE_WIDTHS
REFERENCE_WIDTHS = (32, 64, 128, 256)  # channels per level of the SHD reference implementation
DEFAULT_KERNEL_SIZES = (3, 1, 1, 1)  # voxels: 3x3x3 isotropic kernels at the finest level, voxel-wise below
