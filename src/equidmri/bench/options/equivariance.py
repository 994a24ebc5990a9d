"""Equivariance error of one layer and of the U-Net of each operator family (SHD paper App. A.2, Fig. 8).

``equidmri bench equivariance [--quick] [--samples N] [--unet-samples N] [--sweep-samples N]``

Operators (random He initialisation, BatchNorm with its initial statistics, eval mode, float64):

- ``shd``: E(3) x SO(3) on the hemisphere V+ (``SpatioSphericalConv``, 3x3x3 kernel; U-Net ``shd``);
- ``rt-esd``: the same on the full sphere, with the *same weights* as ``shd`` (U-Net ``rt-esd``);
- ``e3-sh``: SH projection (even degrees <= 8), isotropic 3D convolution of the coefficients as channels,
  evaluation on V+ (U-Net ``cnn``);
- ``concat-so3``: the 3x3x3 neighbourhood as channels, then a voxel-wise spherical conv (U-Net ``concat-esd``);
- ``so3``: voxel-wise spherical conv, ESD (U-Net ``esd``).

All but ``rt-esd`` run on V+ (for the antipodally symmetric inputs used here, the full-sphere versions give
the same outputs, SHD Theorem 1, at twice the cost).

Inputs ``1 x C x 8 x 8 x 8 x V`` at nside 8: U[0, 1] samples projected on even SH degrees <= 8. Each sample
draws new weights, a new input and new rotations; the errors (SHD eq. 13, see
:mod:`equidmri.eval.equivariance`) are averaged over the samples. The sweep measures the voxel-rotation
error of the spherical filter alone (the spatial kernel commutes with R) over the graph's kernel width
sigma and neighbour count. Writes ``OUT/equivariance.{json,md,png}`` (``--out``, default ``docs/results``).
"""

from __future__ import annotations

import argparse

from equidmri.bench.catalog import BENCHES
from equidmri.bench.report import add_report_args

NAME = "equivariance"
NSIDE = 8  # the setting; --quick: QUICK_NSIDE
SIZE = 8  # voxels per edge; --quick: QUICK_SIZE
QUICK_NSIDE = 4
QUICK_SIZE = 4
UNET_WIDTHS = (4, 8, 16, 32)  # half the library's default widths, for CPU time
QUICK_UNET_WIDTHS = (4, 4)
DEFAULTS = {"samples": 16, "unet_samples": 6, "sweep_samples": 16}  # what fits ~12 min on a shared 2-core CPU
QUICK = {"samples": 1, "unet_samples": 1, "sweep_samples": 1}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench equivariance``."""
    parser = subparsers.add_parser(
        "equivariance",
        help=BENCHES["equivariance"].summary,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_report_args(
        parser, NAME, f"nside {QUICK_NSIDE}, {QUICK_SIZE}^3 voxels, U-Net widths {QUICK_UNET_WIDTHS}, samples {QUICK}"
    )
    parser.add_argument("--samples", type=int, help=f"samples per single layer (default {DEFAULTS['samples']})")
    parser.add_argument("--unet-samples", type=int, help=f"samples per U-Net (default {DEFAULTS['unet_samples']})")
    parser.add_argument(
        "--sweep-samples", type=int, help=f"samples per sigma/neighbour cell (default {DEFAULTS['sweep_samples']})"
    )
    parser.add_argument("--seed", type=int, default=0, help="first sample's seed (default %(default)s)")
    return parser
