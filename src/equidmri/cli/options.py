"""The options of the subcommands, built without torch, so that ``--help`` and argument errors answer at once.

Every default is read from the library's torch-free modules (:mod:`equidmri.recon.config`,
:mod:`equidmri.nn.defaults`, :mod:`equidmri.dmri.peak_defaults`, the method table of
:mod:`equidmri.methods.registry`); nothing is restated here. :mod:`equidmri.cli.common` holds the steps
that run after the parse.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from equidmri.dmri.peak_defaults import MIN_SEPARATION_ANGLE, NPEAKS, RELATIVE_PEAK_THRESHOLD
from equidmri.methods.registry import DEFAULT_METHOD, find_method
from equidmri.nn.defaults import REFERENCE_WIDTHS
from equidmri.recon.config import (
    DEFAULT_TILE,
    REFINE_STEPS,
    REFINE_TV,
    REFINE_TV_VOLUMES,
    LossWeights,
    NetworkConfig,
    TrainConfig,
)
from equidmri.runtime import PRECISIONS, THREADS_ENV

THREADS_HELP = (
    f"CPU threads for torch, and worker processes for the peak search of a large mask (default: "
    f"${THREADS_ENV[0]}, else ${THREADS_ENV[1]}, else the CPUs this process may use: affinity and cgroup quota)"
)


def add_threads_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--threads``."""
    parser.add_argument("--threads", type=positive_int, metavar="N", help=THREADS_HELP)


def add_verbosity_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``-v`` and ``-q``."""
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="errors only: no warnings, no progress bars (bars are shown only on a terminal)",
    )


def _bounded(kind: Callable[[str], Any], low: float, high: float = math.inf, *, low_open: bool = False):
    """argparse type: ``kind(text)`` within ``low`` (open or closed) and ``high`` (closed)."""

    def parse(text: str) -> Any:
        value = kind(text)
        if not (low < value if low_open else low <= value) or value > high:
            raise argparse.ArgumentTypeError(f"must be in {'(' if low_open else '['}{low}, {high}], got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in "invalid int value"
    return parse


positive_int = _bounded(int, 1)
non_negative_int = _bounded(int, 0)
positive_float = _bounded(float, 0.0, low_open=True)
non_negative_float = _bounded(float, 0.0)


COHORT_HELP = (
    "cohort list: a tab-separated file with a header row and the columns dwi (4D NIfTI), bvals (s/mm²) and "
    "bvecs (FSL files), optionally mask and subject (default: the DWI file's name); relative paths resolve "
    "against the list's folder"
)


def add_input_args(parser: argparse.ArgumentParser, *, required: bool = True) -> argparse._ArgumentGroup:
    """``--dwi --bvals --bvecs --mask`` (the first three required unless ``required`` is False); returns the group."""
    group = parser.add_argument_group("inputs")
    group.add_argument(
        "--dwi", type=Path, required=required, metavar="FILE", help="4D NIfTI (X, Y, Z, N) of the DWI volumes"
    )
    group.add_argument(
        "--bvals", type=Path, required=required, metavar="FILE", help="FSL b-values file: N values, s/mm²"
    )
    group.add_argument(
        "--bvecs",
        type=Path,
        required=required,
        metavar="FILE",
        help="FSL b-vectors file: 3 rows of N unit vectors (image axes, FSL convention)",
    )
    group.add_argument(
        "--mask",
        type=Path,
        metavar="FILE",
        help="3D NIfTI brain mask on the DWI grid, voxels > 0 inside (default: computed from the DWI with "
        "dipy's median_otsu, or every voxel with a b=0 signal when the volume has no background)",
    )
    return group


def add_run_args(parser: argparse.ArgumentParser, metavar: str, text: str, *, seed: bool = False) -> None:
    """``--out`` (``metavar``, help ``text``) ``--force`` [``--seed``] ``--threads -v -q`` of a one-output command
    (``fa``, ``harmonize``, ``lesions``)."""
    parser.add_argument("--out", type=Path, required=True, metavar=metavar, help=text)
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    add_threads_arg(parser)
    add_verbosity_args(parser)


def add_common_args(parser: argparse.ArgumentParser, *, seed: bool = True) -> None:
    """``--out --force --seed --device --threads -v -q`` (``--seed`` only where something is random)."""
    group = parser.add_argument_group("run")
    group.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="output directory (created; must be new or empty)"
    )
    group.add_argument(
        "--force", action="store_true", help="write into an existing non-empty output directory, overwriting its files"
    )
    if seed:
        group.add_argument(
            "--seed",
            type=int,
            default=TrainConfig().seed,
            metavar="INT",
            help="seed of the initialisation and patch sampling (default: %(default)s)",
        )
    group.add_argument(
        "--device", default="cpu", metavar="DEVICE", help="torch device, e.g. cpu or cuda:0 (default: %(default)s)"
    )
    add_threads_arg(group)
    add_verbosity_args(group)


def add_pretrained_args(parser: argparse.ArgumentParser) -> None:
    """``--train-from-scratch`` and ``--finetune`` (the shipped pretrained model; ``deconv`` and ``demo``)."""
    group = parser.add_argument_group("pretrained model")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument(
        "--train-from-scratch",
        action="store_true",
        help="train SHD-TV on this volume alone (--epochs, the paper's per-volume setting) instead of applying the "
        "shipped pretrained model; the default with SHD-TV is a pretrained model when the acquisition is in its "
        "range (one shell of b = 700-3000 s/mm^2 with 20-150 directions, or three shells of b = 500-1500, "
        "1000-2500, 2000-3500 s/mm^2 with 12-150 directions each; plus b=0), per-volume training otherwise",
    )
    choice.add_argument(
        "--finetune",
        type=positive_int,
        metavar="N",
        help="continue training the pretrained model on this volume for N epochs before deconvolving it",
    )


def add_training_args(parser: argparse.ArgumentParser) -> None:
    """Training and network options; defaults from ``TrainConfig``, ``LossWeights`` and ``NetworkConfig``."""
    train, weights, network = TrainConfig(), LossWeights(), NetworkConfig()
    group = parser.add_argument_group("training")
    for option, kind, metavar, text in (
        ("--epochs", positive_int, "N", "training epochs"),
        ("--patch-size", positive_int, "VOXELS", "edge of the training patches, voxels"),
        ("--batch-size", positive_int, "N", "patches per optimiser step"),
        ("--lr", positive_float, "RATE", "Adam learning rate, dimensionless"),
    ):
        group.add_argument(
            option,
            type=kind,
            default=getattr(train, option[2:].replace("-", "_")),
            metavar=metavar,
            help=f"{text} (default: %(default)s)",
        )
    for term, text in (("nn", "fODF non-negativity penalty"), ("sparsity", "Cauchy sparsity penalty")):
        group.add_argument(
            f"--lambda-{term}",
            type=non_negative_float,
            default=getattr(weights, term),
            metavar="WEIGHT",
            help=f"weight of the {text}, dimensionless (default: %(default)s)",
        )
    group.add_argument(
        "--lambda-tv",
        type=non_negative_float,
        metavar="WEIGHT",
        help="weight of the spatial total variation, dimensionless (default: the method's own, "
        f"{weights.tv} for SHD-TV and CNN-TV, 0 for the other networks)",
    )
    group = parser.add_argument_group("method and network")
    group.add_argument(
        "--method",
        type=method_name,
        default=DEFAULT_METHOD,
        metavar="NAME",
        help="fODF method, any of `equidmri methods` (case-insensitive; 'CSD (lmax N)' for any even N); "
        "the training and network options apply to the learned ones (default: %(default)s)",
    )
    group.add_argument(
        "--model", type=method_name, metavar="NAME", help="deprecated alias of --method (e.g. shd-tv, shd, rt-esd)"
    )
    group.add_argument(
        "--widths",
        type=positive_int,
        nargs="+",
        default=list(network.widths),
        metavar="C",
        help="channels per U-Net level (default: %(default)s, CPU-friendly; the SHD reference "
        f"code uses {' '.join(map(str, REFERENCE_WIDTHS))})",
    )
    group.add_argument(
        "--kernel-sizes",
        type=positive_int,
        nargs="+",
        default=list(network.kernel_sizes),
        metavar="VOXELS",
        help="odd spatial kernel edge per level, voxels (default: %(default)s)",
    )
    group.add_argument(
        "--cheb-order",
        type=positive_int,
        default=network.cheb_order,
        metavar="K",
        help="Chebyshev polynomials per spherical filter (default: %(default)s)",
    )


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """Inference tile and peak extraction options."""
    group = parser.add_argument_group("inference and peaks")
    group.add_argument(
        "--tile",
        type=positive_int,
        default=DEFAULT_TILE,
        metavar="VOXELS",
        help="edge of the inference tiles, voxels; bounds memory (default: %(default)s)",
    )
    group.add_argument(
        "--refine-steps",
        type=non_negative_int,
        default=REFINE_STEPS,
        metavar="N",
        help="a learned method: Adam steps that refine each voxel's fODF (SH lmax 8) and tissue fractions under the "
        "loss after the network's pass (reconstruction, non-negativity; a spatial term: see --refine-tv); 0 keeps the "
        "network's output as it is, the paper's setting (default: %(default)s)",
    )
    group.add_argument(
        "--refine-tv",
        type=non_negative_float,
        default=None,
        metavar="W",
        help="a learned method: weight of a spatial (TV) term in the refinement, the squared difference of the unit-"
        "normalised fODFs of face neighbours (SHD-TV's TV term); every mask voxel is then refined together. 0 "
        f"refines each voxel on its own. Default with the WM alone (a single shell): {REFINE_TV:g} x "
        f"{REFINE_TV_VOLUMES} / F for F diffusion-weighted volumes, one prior strength against a data term that is "
        f"a mean over the volumes ({REFINE_TV:g} at {REFINE_TV_VOLUMES} directions, 9.7e-6 at 90; it lowered the "
        "angular error on phantoms at every resolution measured); with GM and CSF (several shells) 3e-5 only where "
        "a voxel's fit is underdetermined, else 0. run.json records the weight and why (docs/pretrained_model.md)",
    )
    group.add_argument(
        "--refine-precision",
        choices=PRECISIONS,
        default=PRECISIONS[0],
        help="a learned method: precision of the refinement's products with the SH basis on the penalty directions "
        "(two thirds of its work). auto: bfloat16 (8-bit mantissa) on a CPU that multiplies it natively "
        "(AVX512-BF16 or AMX), where it made the refinement about 1.25x as fast; float32 anywhere else. With "
        "float32 every machine gives the same answer up to float32 rounding. run.json records the one used "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--relative-peak-threshold",
        type=_bounded(float, 0.0, 1.0, low_open=True),
        default=RELATIVE_PEAK_THRESHOLD,
        metavar="FRACTION",
        help="drop peaks below this fraction of the voxel's largest peak, in (0, 1] (default: %(default)s)",
    )
    group.add_argument(
        "--min-separation-angle",
        type=_bounded(float, 0.0, 90.0),
        default=MIN_SEPARATION_ANGLE,
        metavar="DEGREES",
        help="minimum angle between peaks, degrees in [0, 90] (default: %(default)s)",
    )
    group.add_argument(
        "--npeaks", type=positive_int, default=NPEAKS, metavar="P", help="peaks kept per voxel (default: %(default)s)"
    )


def method_name(text: str) -> str:
    """argparse type: the registered name of the method ``text`` names (:func:`equidmri.methods.find_method`)."""
    try:
        return find_method(text).name
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


method_name.__name__ = "method"  # argparse names the type in "invalid method value"
