"""Time and peak memory of one E(3) x SO(3) layer and of the U-Net along the SHD paper's Fig. 4 ablation.

``equidmri bench layers`` and ``equidmri bench unet`` (``--help`` of each lists the options).

Five variants change one thing at a time (Elaldi, Gerig & Dey, NeurIPS 2024, Fig. 4 and its ablation);
a-d apply the isotropic 3x3x3 kernel as the reference implementations do, with one ``conv3d`` over
``K * C_in`` channels (``spatial="conv3d"``):

- ``a``: full sphere, sparse Laplacian, Chebyshev recursion per call (DeepSphere / RT-ESD);
- ``b``: full sphere, dense Laplacian, the same recursion;
- ``c``: full sphere, precomputed dense ``T_k`` stack (``method="chebyshev"``);
- ``d``: hemisphere V+, precomputed dense ``T_k`` of L+ (the SHD paper's layer);
- ``e``: ours: hemisphere V+, spectral path (``method="spectral"``) and the distance-class stencil
  (``spatial="stencil"``), the library default; for the U-Net's forward pass also with BatchNorm folded into
  the convolutions, as ``equidmri`` infers.

``layers``: one ``SpatioSphericalConv`` (16 -> 16 channels, cheb_order 5, 3x3x3 isotropic kernel), input
``(1, V, E, E, E, 16)`` float32 (E = 8 voxels), at nside 1, 2, 4, 8, 16, plus edges E = 4 and 16 at nside 8
for the growth with the volume. ``unet``: ``SHDUNet`` (1 input channel, the library's widths, 4 levels),
input ``(1, 1, E, E, E, V)``, at nside 8, plus E = 4 and 16.

Each (variant, nside, edge, pass) runs in a fresh Python process: build the module, one warm-up, then
``--repeats`` timed runs (fewer if the warm-up says they would exceed ``--budget`` seconds; none if the
warm-up alone does). ``fwd`` is a forward under ``torch.inference_mode``; ``fwdbwd`` a forward and a
backward of the output sum (train mode). Peak memory on CPU is the peak resident set size during the runs
minus the resident set size before the module was built (after one pass through a tiny module of the same
kind, so that torch's lazy initialisation is not counted; the peak counter is reset after construction, so
graph-building temporaries are not counted but the geometry buffers are); on CUDA
``torch.cuda.max_memory_allocated`` minus the allocation before the module was built. The markdown page
gives the ratios to variant a and fits how the time grows with V and with the number of voxels.
"""

from __future__ import annotations

import argparse

from equidmri.bench.catalog import BENCHES as CATALOG
from equidmri.bench.report import add_report_args

VARIANTS = {  # name -> (label, hemisphere, method, spatial)
    "a": ("full sphere, sparse recursion, conv3d", False, "sparse-recursion", "conv3d"),
    "b": ("full sphere, dense recursion, conv3d", False, "dense-recursion", "conv3d"),
    "c": ("full sphere, dense precomputed T_k, conv3d", False, "chebyshev", "conv3d"),
    "d": ("hemisphere, dense precomputed T_k, conv3d (SHD)", True, "chebyshev", "conv3d"),
    "e": ("hemisphere, spectral, stencil (ours, default)", True, "spectral", "stencil"),
}
EDGE = 8  # voxels per edge of the input volume
SCALING_NSIDE = 8  # nside of the volume-size sweep
BENCHES = {  # name -> (title, nsides, quick nsides, extra edges at SCALING_NSIDE, results file)
    "layers": ("one E(3) × SO(3) layer", (1, 2, 4, 8, 16), (1, 2, 4, 8), (4, 16), "efficiency_layers"),
    "unet": ("the SHD U-Net", (8,), (8,), (4, 16), "efficiency_unet"),
}
DEFAULT_REPEATS = 5  # timed runs after one warm-up
QUICK_REPEATS = 3
DEFAULT_BUDGET_S = 60.0  # per measurement: fewer repeats, or none, beyond this


def add_layers_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench layers``."""
    return _add_parser(subparsers, "layers")


def add_unet_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench unet``."""
    return _add_parser(subparsers, "unet")


def add_repeat_args(
    parser: argparse.ArgumentParser, repeats: int, quick_repeats: int, budget_s: float, per: str
) -> None:
    """``--repeats R`` (default None: ``repeats``, ``quick_repeats`` with ``--quick``) and ``--budget SECONDS``,
    the seconds of timed runs per ``per`` at most (default ``budget_s``)."""
    parser.add_argument(
        "--repeats",
        type=int,
        metavar="R",
        help=f"timed runs after the warm-up (default {repeats}, {quick_repeats} with --quick)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=budget_s,
        metavar="SECONDS",
        help=f"seconds of timed runs per {per} at most (default %(default)s)",
    )


def _add_parser(subparsers: argparse._SubParsersAction, bench: str) -> argparse.ArgumentParser:
    _, nsides, quick_nsides, extra_edges, name = BENCHES[bench]
    parser = subparsers.add_parser(
        bench,
        help=CATALOG[bench].summary,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_report_args(
        parser, name, f"nside {' '.join(map(str, quick_nsides))} at E = {EDGE} only, {QUICK_REPEATS} repeats"
    )
    parser.add_argument(
        "--nsides",
        type=int,
        nargs="+",
        metavar="NSIDE",
        help=f"HEALPix resolutions (default {' '.join(map(str, nsides))})",
    )
    parser.add_argument(
        "--edges",
        type=int,
        nargs="*",
        metavar="VOXELS",
        help=f"extra volume edges measured at nside {SCALING_NSIDE}, voxels "
        f"(default {' '.join(map(str, extra_edges))}; none with --quick)",
    )
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    add_repeat_args(parser, DEFAULT_REPEATS, QUICK_REPEATS, DEFAULT_BUDGET_S, "measurement")
    for option, kind in (("variant", str), ("nside", int), ("edge", int), ("pass", str), ("output", str)):
        parser.add_argument(f"--child-{option}", type=kind, help=argparse.SUPPRESS)
    return parser
