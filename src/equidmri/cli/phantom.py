"""``equidmri phantom``: write a DiSCo-like train/validation/test set of phantoms with ground truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from equidmri.cli.commands import COMMANDS, EXIT_OK
from equidmri.cli.options import positive_float, positive_int
from equidmri.sims.defaults import DIRECTIONS_PER_SHELL, FILES, LOW_RES_DIRECTIONS, N_B0, SHELLS, VOLUMES

MIN_SIZE = 8  # voxels

DESCRIPTION = f"""\
Generate three phantom volumes ({", ".join(VOLUMES)}) of curved, crossing (30-90 degrees) and fanning fibre
bundles with partial volume, GM-like and CSF-like isotropic compartments and Rician noise. Protocol:
{N_B0} b=0 + {DIRECTIONS_PER_SHELL} directions at each of b = {", ".join(f"{b:g}" for b in SHELLS)} s/mm²;
the low angular resolution copy keeps the b=0 volumes and {LOW_RES_DIRECTIONS} random directions of the
lowest shell. Writes into OUT/<volume>/: {", ".join(FILES)}. gt_peaks.nii.gz holds world-frame unit
vectors (X, Y, Z, 3P) like equidmri's peaks.nii.gz; bvecs are FSL convention."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``phantom``."""
    parser = subparsers.add_parser("phantom", help=COMMANDS["phantom"], description=DESCRIPTION)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    parser.add_argument("--seed", type=int, default=0, metavar="INT", help="seed (default: %(default)s)")
    parser.add_argument(
        "--size",
        type=positive_int,
        default=40,
        metavar="VOXELS",
        help=f"edge of each cubic volume, 1 mm voxels, >= {MIN_SIZE} (default: %(default)s)",
    )
    parser.add_argument(
        "--snr",
        type=positive_float,
        default=30.0,
        metavar="SNR",
        help="b=0 signal of pure WM over the Rician noise sigma (default: %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    parser.set_defaults(run=run, prog=parser.prog)
    return parser


def run(args: argparse.Namespace) -> int:
    """Generate and write the three volumes, then ``OUT/run.json``."""
    from equidmri.dmri.io import save_json  # numpy, nibabel and dipy: after the parse
    from equidmri.sims.dataset import write_phantom_set

    if args.size < MIN_SIZE:
        raise ValueError(f"--size must be >= {MIN_SIZE} voxels, got {args.size}")
    summary = write_phantom_set(args.out, seed=args.seed, size=args.size, snr=args.snr, force=args.force)
    save_json(args.out / "run.json", {"argv": args.argv, **summary}, force=True)
    sys.stdout.write(f"{args.prog}: wrote {args.out} in {summary['seconds']['total']:.1f} s\n")
    return EXIT_OK
