"""``equidmri deconv``: deconvolve one volume with any registered method (default: SHD-TV, pretrained or trained)."""

from __future__ import annotations

import argparse

from equidmri.cli.commands import COMMANDS, EXIT_OK
from equidmri.cli.options import (
    add_common_args,
    add_input_args,
    add_output_args,
    add_pretrained_args,
    add_training_args,
)

DESCRIPTION = """\
Deconvolve one DWI volume with the method of --method (`equidmri methods` lists them). The default,
SHD-TV, applies a shipped pretrained network when the acquisition is in its range (one shell of b =
700-3000 s/mm^2 with 20-150 directions, or three shells of b = 500-1500, 1000-2500 and 2000-3500 s/mm^2 with
12-150 directions each, plus b=0; no training on the volume, --finetune N to adapt it);
otherwise, or with --train-from-scratch, it trains a spatio-hemispherical deconvolution network on the volume
(unsupervised: it learns to reconstruct the signal through the tissue responses). Every method writes into
--out: fod.nii.gz (WM fODF, MRtrix3 tournier07 SH, lmax 8 unless the method's degree differs, world frame), peaks.nii.gz
(world-frame unit vectors, zeros where there is no peak), peak_values.nii.gz, fractions.nii.gz (tissue
fractions), response.json (not for MRtrix3, which estimates its own), qc.png and run.json; a learned
method also writes model.pt (checkpoint, usable with `equidmri predict`). Every input is validated
before the output directory is created."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``deconv``."""
    parser = subparsers.add_parser("deconv", help=COMMANDS["deconv"], description=DESCRIPTION)
    add_input_args(parser)
    add_common_args(parser)
    parser.add_argument(
        "--resume", action="store_true", help="continue the training saved in OUT/model.pt (OUT may then exist)"
    )
    add_pretrained_args(parser)
    add_training_args(parser)
    add_output_args(parser)
    parser.set_defaults(run=run, prog=parser.prog)
    return parser


def run(args: argparse.Namespace) -> int:
    """Validate the inputs, train, deconvolve and write the outputs."""
    from equidmri.dmri.peak_workers import start_peak_workers, volume_voxels
    from equidmri.runtime import default_threads

    # the peak search's processes start during the imports below, on the core they leave idle
    workers = start_peak_workers(args.threads or default_threads(), volume_voxels(args.dwi))
    try:
        from equidmri.cli.common import deconvolve, report_success  # torch: after the parse

        _, _, record = deconvolve(args, args.dwi, args.bvals, args.bvecs, args.mask, resume=args.resume)
        report_success(record, args.out)
    finally:
        if workers is not None:
            workers.join()
    return EXIT_OK
