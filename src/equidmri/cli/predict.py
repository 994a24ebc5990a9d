"""``equidmri predict``: deconvolve a volume with a network trained by ``equidmri deconv``."""

from __future__ import annotations

import argparse
from pathlib import Path

from equidmri.cli.commands import COMMANDS, EXIT_OK
from equidmri.cli.options import add_common_args, add_input_args, add_output_args

DESCRIPTION = """\
Apply a trained network (model.pt from `equidmri deconv`) to another volume acquired with the same
shells, without training. The signal is normalised by the new volume's WM b=0 response. Writes
fod.nii.gz, peaks.nii.gz, peak_values.nii.gz, fractions.nii.gz, qc.png and run.json into --out."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``predict``."""
    parser = subparsers.add_parser("predict", help=COMMANDS["predict"], description=DESCRIPTION)
    parser.add_argument(
        "--model", type=Path, required=True, metavar="FILE", help="checkpoint written by deconv (DIR/model.pt)"
    )
    add_input_args(parser)
    add_common_args(parser, seed=False)  # inference is deterministic: nothing to seed
    add_output_args(parser)
    parser.set_defaults(run=run, prog=parser.prog)
    return parser


def run(args: argparse.Namespace) -> int:
    """Validate the inputs and the model's shells, deconvolve and write the outputs."""
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
    result = run_predict(model, prepared, progress=show_progress(args), tile=args.tile, peak_kwargs=peak_kwargs(args))
    report_success(finish(args, prepared, result, timings), args.out)
    return EXIT_OK
