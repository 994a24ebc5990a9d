"""Spherical layers × activations on a denoising autoencoder (the seed report's WP5; issue 21 §3).

``equidmri bench spherical-layers [--quick] [--epochs E] [--copies C] [--phantom-size P] [--width W]``

Networks (:mod:`equidmri.denoise.networks`): a voxel-wise dense baseline (non-spherical), per-degree mixing of SH
coefficients (rotation-equivariant, DELIMIT-style) and graph-Chebyshev convolutions on the HEALPix hemisphere
(ESD's voxel-wise layer), each with ReLU, sigmoid, tanh and softplus, applied in signal space or in SH space (dense:
signal space only). Each is trained once per subject on its training voxels with Rician noise added at every SNR
of the experiment (``--copies`` realisations per voxel and SNR, Adam, ``--epochs``), then applied to the held-out
voxels of one noisy copy of the volume per SNR; dipy's MP-PCA and Patch2Self denoise the same noisy volumes, and
two references are scored beside them: the noisy input itself and its per-shell SH projection (lmax 8).

Subjects: dipy's ``small_64D`` (b = 1000 s/mm², 64 directions; the *measured* signal is the "clean" target, a
random half of the 1000 voxels trains, the other half tests), and a phantom of the project's generator on the
same gradient scheme (``--phantom-size``³ voxels; trained on one phantom, tested on another of new geometry,
against its noise-free signal).

Measures, in white matter (FA > 0.3 of the clean signal's tensor fit) of the test voxels: (i) runtime per voxel of
the forward pass and of a training step (CPU, this process's threads); (ii) RMSE of the diffusion-weighted signal
over the clean signal's median b=0, and the rotation-invariance error of each network (random rotations R: the SH
fit (lmax 8) of the clean signal plus SNR-10 Gaussian noise, rotated and sampled on the same directions; error
``||c(D(x_R)) - M_R c(D(x))|| / ||M_R c(D(x))||`` of the outputs' SH fits, ``M_R`` the SH rotation); (iii) the
absolute error of FA and MD (dipy DTI, WLS) and the angle of the first fODF peak (dipy CSD, lmax 8, the clean
signal's response) against those of the clean signal. The figure: one real WM voxel's zero-mean signal on the
sphere before and after each activation in each space (the seed's Figs. 2-3).

Writes ``OUT/spherical_layers.json``, ``OUT/spherical_layers.md`` and the figure ``OUT/spherical_layers.png``
(``--out``, default ``docs/results``).
"""

from __future__ import annotations

import argparse

from equidmri.bench.catalog import BENCHES
from equidmri.bench.report import add_report_args, add_size_args

NAME = "spherical_layers"
SIZES = ("epochs", "copies", "phantom_size", "width")
DEFAULTS = {
    "epochs": 12,
    "copies": 3,
    "phantom_size": 14,
    "width": 16,
    "snrs": (5.0, 10.0, 20.0),
    "rotations": 3,
    "activations": ("relu", "sigmoid", "tanh", "softplus"),
    "subjects": ("small_64D", "phantom"),
}
QUICK = {
    "epochs": 2,
    "copies": 1,
    "phantom_size": 8,
    "width": 4,
    "snrs": (10.0,),
    "rotations": 1,
    "activations": ("relu",),
    "subjects": ("phantom",),
}
HELP = {
    "epochs": "training epochs of every network",
    "copies": "noise realisations per training voxel and SNR",
    "phantom_size": "edge of the two phantoms, voxels",
    "width": "channels of the spherical networks' hidden layers (dense: 8x as many units)",
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench spherical-layers``."""
    parser = subparsers.add_parser(
        "spherical-layers", help=BENCHES["spherical-layers"].summary, description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    group = add_size_args(parser, HELP, DEFAULTS, QUICK)
    group.add_argument("--seed", type=int, default=0, help="seed of the splits, noise and initialisations (default: 0)")
    add_report_args(parser, NAME, f"a tiny run for the tests: {QUICK}")
    return parser
