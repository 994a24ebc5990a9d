"""Checks and steps shared by the subcommands after the parse (they load torch; the options are in
:mod:`equidmri.cli.options`)."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from equidmri import __version__
from equidmri.dmri.baselines import fit_dti_fa
from equidmri.dmri.io import load_dwi, prepare_out_dir, save_json
from equidmri.methods import Method, find_method, get_method
from equidmri.methods.registry import DEFAULT_METHOD
from equidmri.recon.config import NetworkConfig, TrainConfig
from equidmri.recon.model import FODFFit
from equidmri.recon.pipeline import (
    OUTPUT_NAMES,
    DeconvResult,
    PreparedData,
    checkpoint_network,
    prepare,
    run_deconv,
    run_method,
    run_predict,
    run_summary,
    timed,
    write_outputs,
)
from equidmri.recon.pretrained import load_pretrained
from equidmri.runtime import default_threads
from equidmri.viz.qc import plot_peaks_qc, qc_centre, views_mask

logger = logging.getLogger(__name__)


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
        raise ValueError(f"method {method.name} {method.unavailable()}")
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
    pretrained = pretrained_choice(args, method, prepared, resume)
    options = learned_options(args, method, checkpoint if resume else None)
    with timed(timings, "build"):
        if pretrained["used"]:
            train_config = TrainConfig(
                epochs=args.finetune or 1, patch_size=args.patch_size, batch_size=args.batch_size, lr=args.lr,
                seed=args.seed,
            )  # fmt: skip
            model = load_pretrained(prepared.gtab, prepared.responses, train_config=train_config, device=device)
        else:
            model = get_method(method.name, prepared.gtab, prepared.responses, device=device, **options).build()
    prepare_out_dir(args.out, force=True)  # checked above, before any computation
    if pretrained["used"] and not args.finetune:
        result = run_predict(
            model,
            prepared,
            progress=progress,
            tile=args.tile,
            refine_steps=args.refine_steps,
            refine_tv=args.refine_tv,
            refine_precision=args.refine_precision,
            peak_kwargs=peak_kwargs(args),
            method=method.name,
        )
        return prepared, result, finish(args, prepared, result, timings, pretrained=pretrained)
    result = run_deconv(
        model,
        prepared,
        checkpoint_path=checkpoint,
        resume=resume,
        progress=progress,
        tile=args.tile,
        refine_steps=args.refine_steps,
        refine_tv=args.refine_tv,
        refine_precision=args.refine_precision,
        peak_kwargs=peak_kwargs(args),
        method=method.name,
    )
    return prepared, result, finish(args, prepared, result, timings, pretrained=pretrained)


def recorded_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options of a command as ``run.json`` records them (paths as strings, no internals)."""
    return {
        k: os.fspath(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("run", "prog", "argv")
    }


def run_record(args: argparse.Namespace, **fields: Any) -> dict[str, Any]:
    """The head of every ``run.json``: ``version``, ``command``, ``argv`` and the parsed ``arguments``
    (:func:`recorded_arguments`), followed by ``fields``."""
    head = {"version": __version__, "command": args.prog, "argv": args.argv, "arguments": recorded_arguments(args)}
    return {**head, **fields}


def pretrained_choice(args: argparse.Namespace, method: Method, prepared: PreparedData, resume: bool) -> dict[str, Any]:
    """Whether ``deconv`` applies a shipped pretrained model (``used``; the single-shell or the multi-shell one, by
    the shell layout: ``model``, ``file``), and why (``reason``, logged and recorded).

    SHD-TV uses it unless ``--train-from-scratch`` or ``--resume`` is given or the acquisition is outside its range
    (then it trains on the volume, saying why). ``--finetune N`` outside the range is an error.
    """
    from equidmri.recon.pretrained import out_of_range, recipe_for

    record: dict[str, Any] = {"file": None, "finetune_epochs": args.finetune or 0}
    if method.name != DEFAULT_METHOD or args.train_from_scratch or resume:
        if args.finetune:
            raise ValueError(f"--finetune continues the pretrained SHD-TV model; it does not apply to {method.name}")
        why = "--resume" if resume else "--train-from-scratch" if args.train_from_scratch else f"method {method.name}"
        return {**record, "used": False, "reason": f"not used: {why}"}
    reason = out_of_range(prepared.shells)
    if reason is not None:
        if args.finetune:
            raise ValueError(f"--finetune needs the pretrained model, which does not apply: {reason}")
        logger.warning("the pretrained model does not apply (%s); training SHD-TV on this volume instead", reason)
        return {**record, "used": False, "reason": f"out of range: {reason}"}
    recipe = recipe_for(prepared.shells)
    how = f"fine-tuned for {args.finetune} epochs on this volume" if args.finetune else "no training on this volume"
    logger.info(
        "using the shipped pretrained %s SHD-TV model (%s; --train-from-scratch trains on the volume)", recipe.name, how
    )
    return {**record, "file": recipe.file, "model": recipe.name, "used": True, "reason": "in range"}


def multi_tissue_maps(fit: FODFFit) -> dict[str, Any]:
    """The QC figure's tissue-fraction panels of a multi-tissue fit (none for WM alone)."""
    if len(fit.tissues) < 2:
        return {}
    return {"fractions": fit.fractions, "tissues": fit.tissues}


def _draw_qc(path: Path, prepared: PreparedData, result: DeconvResult) -> dict[str, float]:
    """Draw the QC figure of ``deconv`` (:func:`~equidmri.viz.qc.plot_peaks_qc`); return ``{"qc": seconds}``."""
    timings: dict[str, float] = {}
    with timed(timings, "qc"):
        label = "" if result.trained else ", predicted"
        centre = qc_centre(result.peak_dirs)
        shown = prepared.mask & views_mask(prepared.mask.shape, centre)  # DTI FA only where the figure shows it
        plot_peaks_qc(
            path,
            fit_dti_fa(prepared.data.dwi, prepared.gtab, shown),
            result.peak_dirs,
            result.peak_values,
            slice_index=centre[2],
            title=f"{result.method} fODF peaks{label}",
            **multi_tissue_maps(result.fit),
        )
    return timings


def finish(
    args: argparse.Namespace,
    prepared: PreparedData,
    result: DeconvResult,
    timings: dict[str, float],
    pretrained: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the outputs, the QC figure (in a thread, beside the writes) and ``run.json`` (last) into ``args.out``;
    return the run record. Its ``timings["total"]`` counts the writes and the figure once, by their wall time.

    Files are overwritten: :func:`check_out_dir` allowed it before any computation.
    """
    timings = {**timings, **result.timings}
    start = time.perf_counter()
    # the QC figure (matplotlib, holding the GIL) is drawn beside the writes (zlib, releasing it): on 2 cores
    # the pair takes about the time of the longer one
    with ThreadPoolExecutor(1, thread_name_prefix="equidmri-qc") as pool:
        figure = pool.submit(_draw_qc, args.out / OUTPUT_NAMES["qc"], prepared, result)
        with timed(timings, "write"):
            write_outputs(args.out, result, prepared.data.affine, force=True)
        timings.update(figure.result())
    side_by_side = time.perf_counter() - start
    timings["total"] = round(sum(t for k, t in timings.items() if k not in ("write", "qc")) + side_by_side, 3)
    summary = {**run_summary(prepared, result), **({"pretrained": pretrained} if pretrained is not None else {})}
    record = run_record(
        args, **{**summary, "timings": timings, "device": args.device, "threads": torch.get_num_threads()}
    )
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
