"""Options, checks and steps shared by the subcommands.

Every default below is read from the library (``TrainConfig``, ``LossWeights``, ``NetworkConfig``,
``dmri.peaks``, ``recon.infer``); nothing is restated here.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from equidmri import __version__
from equidmri.cli.commands import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE
from equidmri.cli.logs import command_logging
from equidmri.dmri.io import load_dwi, prepare_out_dir, save_json
from equidmri.dmri.peaks import MIN_SEPARATION_ANGLE, NPEAKS, RELATIVE_PEAK_THRESHOLD
from equidmri.extras import MissingExtraError
from equidmri.methods import DEFAULT_METHOD, Method, find_method, get_method
from equidmri.nn.models.unet import REFERENCE_WIDTHS
from equidmri.recon.infer import DEFAULT_TILE
from equidmri.recon.losses import LossWeights
from equidmri.recon.model import NetworkConfig
from equidmri.recon.pipeline import (
    OUTPUT_NAMES,
    DeconvResult,
    PreparedData,
    checkpoint_network,
    prepare,
    run_deconv,
    run_method,
    run_summary,
    timed,
    write_outputs,
)
from equidmri.recon.train import TrainConfig, TrainingDivergedError
from equidmri.runtime import THREADS_ENV, ContentionWatch, default_threads
from equidmri.viz.qc import plot_peaks_qc

logger = logging.getLogger(__name__)

USAGE_ERRORS = (ValueError, OSError, MissingExtraError)  # reported in one line with EXIT_USAGE (OSError: missing
# or existing files; MissingExtraError: a method whose optional dependency is not installed)


THREADS_HELP = (
    f"CPU threads for torch (default: ${THREADS_ENV[0]}, else ${THREADS_ENV[1]}, else the CPUs this "
    "process may use: affinity and cgroup quota)"
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


def set_threads(args: argparse.Namespace) -> int:
    """Set torch's CPU threads from ``--threads`` or :func:`equidmri.runtime.default_threads`; return them.

    Raises
    ------
    ValueError
        If ``EQUIDMRI_THREADS`` or ``OMP_NUM_THREADS`` is used and is not a positive integer.
    """
    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    logger.info("%d CPU thread(s) for torch", threads)
    return threads


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars unless ``-q`` or stderr is not a terminal (a log file would get one huge line)."""
    return not args.quiet and sys.stderr.isatty()


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


def chosen_method(args: argparse.Namespace) -> Method:
    """The method of ``--method``, or of the deprecated ``--model`` when given (with a warning)."""
    if args.model is not None:
        logger.warning("--model is deprecated; use --method %s", shlex.quote(args.model))
        return find_method(args.model)
    return find_method(args.method)


def network_config(args: argparse.Namespace, method: Method) -> NetworkConfig:
    """Architecture options of the learned ``method`` (its ``model`` is the method's architecture)."""
    architecture = method.options.get("architecture", NetworkConfig().model)
    return NetworkConfig(
        model=architecture, widths=tuple(args.widths), kernel_sizes=tuple(args.kernel_sizes), cheb_order=args.cheb_order
    )


def learned_options(args: argparse.Namespace, method: Method, resumed: Path | None = None) -> dict[str, Any]:
    """Options of the learned ``method`` (:class:`equidmri.methods.networks.NetworkMethod`) from the command line;
    ``lambda_tv`` only when ``--lambda-tv`` is given (else the method's own). With ``resumed`` (a checkpoint to
    continue), the network is the checkpoint's, and differing network options are ignored with a warning.

    Raises
    ------
    FileNotFoundError, ValueError
        If ``resumed`` is not a readable checkpoint.
    """
    options = {
        "epochs": args.epochs,
        "patch_size": args.patch_size,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "lambda_nn": args.lambda_nn,
        "lambda_sparsity": args.lambda_sparsity,
        "network": network_config(args, method),
    }
    if args.lambda_tv is not None:
        options["lambda_tv"] = args.lambda_tv
    if resumed is not None:
        options["network"] = checkpoint_network(resumed)
        options["architecture"] = options["network"].model
        if options["network"] != network_config(args, method):
            logger.warning(
                "--resume rebuilds the checkpoint's network %s; the network options are ignored",
                options["network"].to_dict(),
            )
    return options


def peak_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :func:`equidmri.dmri.peaks.find_peaks`."""
    return {
        "relative_peak_threshold": args.relative_peak_threshold,
        "min_separation_angle": args.min_separation_angle,
        "npeaks": args.npeaks,
    }


def setup_runtime(args: argparse.Namespace) -> torch.device:
    """Set torch's thread count (:func:`set_threads`) and check the device.

    Raises
    ------
    ValueError
        If ``--device`` is not a torch device or names CUDA on a machine without it, or as :func:`set_threads`.
    """
    set_threads(args)
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        raise ValueError(f"--device {args.device!r} is not a torch device ({error})") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device} needs CUDA, which is not available here; use --device cpu")
    return device


def check_out_dir(out: Path, *, force: bool, resume: bool = False) -> None:
    """Refuse an output directory that is a file, or is non-empty without ``force`` or ``resume``.

    Raises
    ------
    FileExistsError
        If ``out`` is a file, or an existing non-empty directory without ``force`` (nor ``resume``).
    FileNotFoundError
        If ``resume`` and ``out`` holds no checkpoint.
    """
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a directory")
    if resume:
        if not (out / OUTPUT_NAMES["checkpoint"]).is_file():
            raise FileNotFoundError(f"--resume needs {out / OUTPUT_NAMES['checkpoint']} from an earlier run")
    elif out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(f"output directory {out} exists and is not empty; use --force to overwrite")


def load_prepared(dwi: Path, bvals: Path, bvecs: Path, mask: Path | None, timings: dict[str, float]) -> PreparedData:
    """Load and validate the inputs, then :func:`~equidmri.recon.pipeline.prepare` them (mask, responses)."""
    with timed(timings, "load"):
        data = load_dwi(dwi, bvals, bvecs, mask)
    return prepare(data)


def deconvolve(
    args: argparse.Namespace, dwi: Path, bvals: Path, bvecs: Path, mask: Path | None, *, resume: bool = False
) -> tuple[PreparedData, DeconvResult, dict[str, Any]]:
    """The ``deconv`` pipeline: validate, fit the method (a network: train it on the volume), write every output
    and ``run.json``."""
    device = setup_runtime(args)
    method = chosen_method(args)
    if resume and not method.learned:
        raise ValueError(f"--resume continues a training, and {method.name} is not a learned method")
    if not method.available():
        raise ValueError(f"method {method.name} needs {method.requires}, which is not on PATH")
    check_out_dir(args.out, force=args.force, resume=resume)
    timings: dict[str, float] = {}
    prepared = load_prepared(dwi, bvals, bvecs, mask, timings)
    progress = show_progress(args)
    if not method.learned:
        with timed(timings, "build"):
            model = get_method(method.name, prepared.gtab, prepared.responses)
        prepare_out_dir(args.out, force=True)  # checked above, before any computation
        result = run_method(
            model,
            prepared,
            method=method.name,
            progress=progress,
            peak_kwargs=peak_kwargs(args),
            responses_used=not method.own_responses,
        )
        return prepared, result, finish(args, prepared, result, timings)
    checkpoint = args.out / OUTPUT_NAMES["checkpoint"]
    options = learned_options(args, method, checkpoint if resume else None)
    with timed(timings, "build"):
        model = get_method(method.name, prepared.gtab, prepared.responses, device=device, **options).build()
    prepare_out_dir(args.out, force=True)  # checked above, before any computation
    result = run_deconv(
        model,
        prepared,
        checkpoint_path=checkpoint,
        resume=resume,
        progress=progress,
        tile=args.tile,
        peak_kwargs=peak_kwargs(args),
        method=method.name,
    )
    return prepared, result, finish(args, prepared, result, timings)


def finish(
    args: argparse.Namespace, prepared: PreparedData, result: DeconvResult, timings: dict[str, float]
) -> dict[str, Any]:
    """Write the outputs, the QC figure and ``run.json`` (last) into ``args.out``; return the run record.

    Files are overwritten: :func:`check_out_dir` allowed it before any computation.
    """
    timings = {**timings, **result.timings}
    with timed(timings, "write"):
        write_outputs(args.out, result, prepared.data.affine, force=True)
    with timed(timings, "qc"):
        label = "" if result.trained else ", predicted"
        plot_peaks_qc(
            args.out / OUTPUT_NAMES["qc"],
            result.fa,
            result.peak_dirs,
            result.peak_values,
            title=f"{result.method} fODF peaks{label}",
        )
    timings["total"] = round(sum(timings.values()), 3)
    arguments = {
        k: os.fspath(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("run", "prog", "argv")
    }
    record = {
        "version": __version__,
        "command": args.prog,
        "argv": args.argv,
        "arguments": arguments,
        **run_summary(prepared, result),
        "timings": timings,
        "device": args.device,
        "threads": torch.get_num_threads(),
    }
    save_json(args.out / OUTPUT_NAMES["run"], record, force=True)
    return record


def report_success(record: dict[str, Any], out: Path) -> None:
    """User-facing summary on stdout."""
    loss = record["final_loss"]
    loss_text = f", final loss {loss['total']:.4g}" if loss else ""
    sys.stdout.write(
        f"{record['command']}: wrote {out} in {record['timings']['total']:.1f} s "
        f"({record['mask_voxels']} {record['mask_source']} mask voxels{loss_text})\n"
    )


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed subcommand with its logging and a :class:`~equidmri.runtime.ContentionWatch`; report a
    failure in one line on stderr and return its exit code."""
    with command_logging(args.verbose, getattr(args, "quiet", False)), ContentionWatch():
        try:
            return args.run(args)
        except TrainingDivergedError as error:
            return _fail(args, error, EXIT_FAILURE)
        except USAGE_ERRORS as error:
            return _fail(args, error, EXIT_USAGE)
        except KeyboardInterrupt:
            sys.stderr.write(f"{args.prog}: interrupted\n")
            return EXIT_INTERRUPTED


def _fail(args: argparse.Namespace, error: BaseException, code: int) -> int:
    logger.debug("%s failed", args.prog, exc_info=error)
    sys.stderr.write(f"{args.prog}: error: {' '.join(str(error).split())}\n")
    return code
