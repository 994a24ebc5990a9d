"""Names and defaults of the denoisers, read without torch (by the command line's parser)."""

LAYERS = {
    "dense": "voxel-wise fully connected (non-spherical baseline)",
    "sh": "per-degree mixing of SH coefficients (rotation-equivariant, DELIMIT-style)",
    "chebyshev": "graph-Chebyshev convolution on the HEALPix hemisphere (ESD, voxel-wise)",
}
ACTIVATION_NAMES = ("relu", "sigmoid", "tanh", "softplus")
SPACES = ("signal", "sh")  # where the activation acts: function values or SH coefficients
DEFAULT_LAYER, DEFAULT_ACTIVATION, DEFAULT_SPACE = "sh", "relu", "signal"
DEFAULT_WIDTH = 16  # hidden channels
DEFAULT_EPOCHS = 40
DEFAULT_SNRS = (10.0, 20.0, 30.0)  # b=0 signal over Rician σ of the noise added for training
DEFAULT_COPIES = 8  # noise realisations per voxel and SNR
