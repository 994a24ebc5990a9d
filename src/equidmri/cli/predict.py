"""``equidmri predict``: deconvolve a volume, or every subject of a cohort, with a trained network."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from equidmri.cli.commands import COMMANDS, EXIT_OK
from equidmri.cli.options import COHORT_HELP, add_common_args, add_input_args, add_output_args

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Apply a trained network (model.pt from `equidmri deconv` or `equidmri train`) to another volume acquired with
the same shells, without training. The signal is normalised by the new volume's WM b=0 response. Writes
fod.nii.gz, peaks.nii.gz, peak_values.nii.gz, fractions.nii.gz, qc.png and run.json into --out. With --cohort
instead of --dwi/--bvals/--bvecs, every subject of the list gets these files in OUT/<subject>/; a subject whose
OUT/<subject>/run.json exists is skipped (unless --force), so an interrupted cohort continues where it
stopped. Under `torchrun --nproc_per_node N`, process r takes the subjects r, r + N, ... (no communication
between them). Every input is checked before anything is written."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``predict``."""
    parser = subparsers.add_parser("predict", help=COMMANDS["predict"], description=DESCRIPTION)
    parser.add_argument(
        "--model",
        type=Path,
        required=True,
        metavar="FILE",
        help="checkpoint written by deconv or train (DIR/model.pt); read as data only, never as code",
    )
    group = add_input_args(parser, required=False)
    group.add_argument("--cohort", type=Path, metavar="FILE", help=f"{COHORT_HELP} (instead of --dwi ...)")
    add_common_args(parser, seed=False)  # inference is deterministic: nothing to seed
    add_output_args(parser)
    parser.set_defaults(run=run, prog=parser.prog)
    return parser


def run(args: argparse.Namespace) -> int:
    """Validate the inputs and the model's shells, deconvolve and write the outputs."""
    volume = [name for name in ("dwi", "bvals", "bvecs", "mask") if getattr(args, name) is not None]
    if args.cohort is not None:
        if volume:
            raise ValueError(f"--cohort replaces --{', --'.join(volume)}: give masks in the list's mask column")
        return run_cohort(args)
    missing = [name for name in ("dwi", "bvals", "bvecs") if getattr(args, name) is None]
    if missing:
        raise ValueError(f"predict needs --dwi, --bvals and --bvecs (missing --{', --'.join(missing)}), or --cohort")
    from equidmri.cli.common import (  # torch: after the parse
        check_out_dir,
        finish,
        load_prepared,
        peak_kwargs,
        report_success,
        setup_runtime,
        show_progress,
    )
    from equidmri.dmri.io import prepare_out_dir
    from equidmri.recon.model import SHDModel
    from equidmri.recon.pipeline import run_predict, timed

    device = setup_runtime(args)
    check_out_dir(args.out, force=args.force)
    timings: dict[str, float] = {}
    prepared = load_prepared(args.dwi, args.bvals, args.bvecs, args.mask, timings)
    with timed(timings, "build"):
        model = SHDModel.from_checkpoint(args.model, prepared.gtab, device)  # ValueError if the shells differ
    prepare_out_dir(args.out, force=True)  # checked above, before any computation
    result = run_predict(
        model,
        prepared,
        progress=show_progress(args),
        tile=args.tile,
        refine_steps=args.refine_steps,
        refine_tv=args.refine_tv,
        refine_precision=args.refine_precision,
        peak_kwargs=peak_kwargs(args),
    )
    report_success(finish(args, prepared, result, timings), args.out)
    return EXIT_OK


def run_cohort(args: argparse.Namespace) -> int:
    """``--cohort``: check every subject and the model's shells, then deconvolve this process's subjects."""
    from equidmri.cli.common import (  # torch: after the parse
        finish,
        load_prepared,
        peak_kwargs,
        setup_runtime,
        show_progress,
    )
    from equidmri.cli.launch import launched_rank, quiet_other_ranks
    from equidmri.data import read_cohort
    from equidmri.dmri.io import prepare_out_dir
    from equidmri.recon.cohort import check_cohort
    from equidmri.recon.model import SHDModel, check_same_shells
    from equidmri.recon.pipeline import OUTPUT_NAMES, checkpoint_input_shells, run_predict, timed

    device = setup_runtime(args)
    rank, world_size, _ = launched_rank()
    quiet_other_ranks(rank)
    if args.out.exists() and not args.out.is_dir():
        raise FileExistsError(f"--out {args.out} exists and is not a directory")
    subjects = read_cohort(args.cohort)
    check_same_shells(check_cohort(subjects).bvals, checkpoint_input_shells(args.model))
    done = skipped = 0
    for subject in subjects[rank::world_size]:
        out = args.out / subject.subject
        if (out / OUTPUT_NAMES["run"]).is_file() and not args.force:
            logger.info("subject %s: %s is complete, skipped", subject.subject, out)
            skipped += 1
            continue
        timings: dict[str, float] = {}
        prepared = load_prepared(subject.dwi, subject.bvals, subject.bvecs, subject.mask, timings)
        with timed(timings, "build"):
            model = SHDModel.from_checkpoint(args.model, prepared.gtab, device)
        prepare_out_dir(out, force=True)  # an incomplete earlier attempt is overwritten
        result = run_predict(
            model,
            prepared,
            progress=show_progress(args),
            tile=args.tile,
            refine_steps=args.refine_steps,
            refine_tv=args.refine_tv,
            refine_precision=args.refine_precision,
            peak_kwargs=peak_kwargs(args),
        )
        finish(argparse.Namespace(**{**vars(args), "out": out}), prepared, result, timings)
        done += 1
    sys.stdout.write(
        f"{args.prog}: wrote {done} subject(s) into {args.out}, skipped {skipped} complete one(s)"
        f"{f' (process {rank + 1} of {world_size})' if world_size > 1 else ''}\n"
    )
    return EXIT_OK
