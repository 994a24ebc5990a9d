"""``equidmri train``: train one network on a cohort, alone or as N processes under ``torchrun``."""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from equidmri.cli.commands import COMMANDS, EXIT_OK
from equidmri.cli.options import COHORT_HELP, add_common_args, add_training_args, non_negative_float, positive_int

DESCRIPTION = """\
Train one network (default SHD-TV: the network and loss of `deconv --method shd-tv`) on every subject of a
cohort list, unsupervised, and write OUT/model.pt for `equidmri predict --model` (any volume or cohort with
the same shells; each is normalised by its own WM b=0 response). Each subject keeps its own gradient
directions and tissue responses (estimated inside its mask as `deconv` does); all share one shell layout.
Each subject is prepared once into OUT/subjects/<subject>/ (mask, response, b0-normalised signal as a
memory-mapped .npy: disk = X*Y*Z*N*4 bytes per subject) and training reads patches from there, so memory
follows the batch, not the cohort. One epoch visits each subject's mask about once (its mask voxels / patch
voxels patches). Under `torchrun --nproc_per_node N` the same command trains with N processes
(DistributedDataParallel; gloo on CPU, nccl on CUDA): the steps of an epoch are split over them, each step of
each process is --batch-size patches of one subject (the effective batch is N times larger), rank 0 writes the
checkpoint, run.json and the progress bar. Every subject is checked (files, gradients, shells) before anything
is written."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``train``."""
    parser = subparsers.add_parser("train", help=COMMANDS["train"], description=DESCRIPTION)
    group = parser.add_argument_group("inputs")
    source = group.add_mutually_exclusive_group(required=True)
    source.add_argument("--cohort", type=Path, metavar="FILE", help=COHORT_HELP)
    source.add_argument(
        "--synthetic",
        nargs="?",
        const="single-shell",
        choices=("single-shell", "multi-shell"),
        metavar="LAYOUT",
        help="train a shipped model's recipe instead: one new synthetic phantom per epoch (24^3 voxels, SNR 10-50, "
        "varied diffusivities), each shell read at a random subset of its 90 directions and reconstructed at all "
        "90 (angular super-resolution); writes OUT/model.pt. LAYOUT single-shell (the default): one shell of "
        "b = 700-3000 s/mm^2, 20-90 directions read; multi-shell: three shells (b = 500-1500, 1000-2500, "
        "2000-3500 s/mm^2), 12-90 directions read per shell, WM/GM/CSF responses. --patches-per-epoch defaults "
        "to 32 per process here",
    )
    add_common_args(parser)
    parser.add_argument(
        "--supervised",
        type=non_negative_float,
        default=0.0,
        metavar="W",
        help="with --synthetic: add the phantoms' true fODFs to the loss with weight W (mean squared difference of "
        "the lmax-8 SH coefficients); default 0, the paper's unsupervised loss alone",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the training saved in OUT/model.pt (OUT may then exist; prepared subjects are reused)",
    )
    add_training_args(parser)
    parser.add_argument(
        "--patches-per-epoch",
        type=positive_int,
        metavar="N",
        help="patches of each subject per epoch (default: its mask voxels / patch voxels, at least --batch-size)",
    )
    parser.set_defaults(run=run, prog=parser.prog)
    return parser


DDP_STRIDES_WARNING = "Grad strides do not match bucket view strides"  # DDP, about the strides of the size-1
# dimensions of a (C_out, C_in, 1, 1) weight's gradient: an extra copy into DDP's buffer at most, not an error


def run(args: argparse.Namespace) -> int:
    """Check the cohort, prepare its subjects, train and (rank 0) write ``run.json``."""
    import numpy as np  # torch and numpy: after the parse

    from equidmri.cli.common import check_out_dir, chosen_method, learned_options, setup_runtime, show_progress
    from equidmri.cli.launch import process_group, quiet_other_ranks, synchronise
    from equidmri.data import read_cohort
    from equidmri.dmri.io import prepare_out_dir, save_json
    from equidmri.methods import get_method
    from equidmri.recon.cohort import (
        check_cohort,
        epoch_batches,
        prepare_cohort,
        process_rank,
        reference_responses,
        train_cohort,
    )
    from equidmri.recon.pipeline import OUTPUT_NAMES, TIMING_DECIMALS, timed
    from equidmri.runtime import memory_mib

    warnings.filterwarnings("ignore", message=DDP_STRIDES_WARNING)  # within the command's warning filters
    if args.synthetic:
        return run_synthetic(args)
    with process_group(setup_runtime(args)) as device:
        rank, world_size = process_rank()
        quiet_other_ranks(rank)
        method = chosen_method(args)
        if not method.learned:
            raise ValueError(f"train needs a learned method; {method.name} is fitted to each volume")
        check_out_dir(args.out, force=args.force, resume=args.resume)
        subjects = read_cohort(args.cohort)
        shells = check_cohort(subjects)
        synchronise()  # every process has checked the outputs before rank 0 writes any
        if rank == 0:
            prepare_out_dir(args.out, force=True)
        synchronise()
        timings: dict[str, float] = {}
        with timed(timings, "prepare"):
            prepared = prepare_cohort(subjects, args.out, reuse=args.resume)
        checkpoint = args.out / OUTPUT_NAMES["checkpoint"]
        options = learned_options(args, method, checkpoint if args.resume else None)
        options["patches_per_epoch"] = args.patches_per_epoch
        memory = {"prepare": memory_mib()}
        with timed(timings, "build"):
            responses = reference_responses(prepared)
            model = get_method(method.name, prepared[0].gtab(), responses, device=device, **options).build()
        epoch_ends = [time.perf_counter()]
        with timed(timings, "train"):
            history = train_cohort(
                model,
                prepared,
                checkpoint_path=checkpoint,
                resume=args.resume,
                progress=show_progress(args),
                callback=lambda epoch, terms: epoch_ends.append(time.perf_counter()),
            )
        memory["train"] = memory_mib()
        if rank == 0:
            record = _record(args, method.name, model, prepared, shells.bvals.tolist(), history, timings, world_size)
            batches = epoch_batches(prepared, model.train_config)
            record["epoch_batches"] = {
                "all_processes": sum(batches),  # batches of --batch-size patches per epoch
                "per_process": math.ceil(sum(batches) / world_size),  # DistributedSampler pads to equal shares
            }
            record["epoch_seconds"] = np.round(np.diff(epoch_ends), TIMING_DECIMALS).tolist()
            record["memory_mib"] = memory  # rank 0, after preparation and after training (runtime.memory_mib)
            save_json(args.out / OUTPUT_NAMES["run"], record, force=True)
            loss = f", final loss {history[-1]['total']:.4g}" if history else ""
            sys.stdout.write(
                f"{args.prog}: trained {method.name} on {len(prepared)} subjects with {world_size} process(es) in "
                f"{timings['train']:.1f} s{loss}; wrote {checkpoint}\n"
            )
    return EXIT_OK


def run_synthetic(args: argparse.Namespace) -> int:
    """``train --synthetic``: the pretrained model's recipe (:mod:`equidmri.recon.pretrained`), alone or torchrun."""
    from equidmri.cli.common import check_out_dir, run_record, setup_runtime, show_progress
    from equidmri.cli.launch import process_group, quiet_other_ranks, synchronise
    from equidmri.dmri.io import prepare_out_dir, save_json
    from equidmri.recon.cohort import process_rank
    from equidmri.recon.pipeline import OUTPUT_NAMES
    from equidmri.recon.pretrained import RECIPES, train_pretrained

    with process_group(setup_runtime(args)) as device:
        rank, world_size = process_rank()
        quiet_other_ranks(rank)
        check_out_dir(args.out, force=args.force, resume=args.resume)
        synchronise()
        if rank == 0:
            prepare_out_dir(args.out, force=True)
        synchronise()
        checkpoint = args.out / OUTPUT_NAMES["checkpoint"]
        start = time.perf_counter()
        history = train_pretrained(
            checkpoint,
            epochs=args.epochs,
            patches_per_epoch=args.patches_per_epoch or 32,
            patch_size=args.patch_size,
            seed=args.seed,
            resume=args.resume,
            device=str(device),
            progress=show_progress(args),
            supervised=args.supervised,
            recipe=RECIPES[args.synthetic],
        )
        seconds = time.perf_counter() - start
        if rank == 0:
            record = run_record(args, processes=world_size, train_seconds=round(seconds, 1), history=history)
            save_json(args.out / OUTPUT_NAMES["run"], record, force=True)
            sys.stdout.write(
                f"{args.prog}: trained the {args.synthetic} pretrained recipe on {len(history) * world_size} synthetic "
                f"phantoms with {world_size} process(es) in {seconds:.1f} s, final loss {history[-1]['total']:.4g}; "
                f"wrote {checkpoint}\n"
            )
    return EXIT_OK


def _record(
    args: argparse.Namespace,
    method: str,
    model: Any,
    prepared: list,
    shells: list[float],
    history: list[dict[str, float]],
    timings: dict[str, float],
    world_size: int,
) -> dict[str, Any]:
    import torch

    from equidmri.cli.common import run_record

    return run_record(
        args,
        **{
            "method": method,
            "network": model.network_config.to_dict(),
            "train": model.train_config.to_dict(),
            "shells": shells,
            "subjects": [
                {
                    "subject": s.subject,
                    "shape": list(s.shape),
                    "mask_voxels": s.mask_voxels,
                    "responses": s.responses.to_dict(),
                }
                for s in prepared
            ],
            "reference_responses": model.responses.to_dict(),
            "processes": world_size,
            "epochs_trained": len(history),
            "final_loss": history[-1] if history else None,
            "history": history,
            "timings": timings,
            "device": args.device,
            "threads": torch.get_num_threads(),
        },
    )
