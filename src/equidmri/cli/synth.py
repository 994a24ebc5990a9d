"""``equidmri synth``: calibrate on one subject and write synthetic training voxels with its tissue statistics."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from equidmri import __version__
from equidmri.cli.commands import COMMANDS, EXIT_OK
from equidmri.cli.options import (
    add_input_args,
    add_threads_arg,
    add_verbosity_args,
    positive_float,
    positive_int,
)
from equidmri.synth.defaults import DEFAULT_MODE, MAX_FIBRES, MODES

DEFAULT_VOXELS = 10000  # synthetic voxels

DESCRIPTION = f"""\
Calibrate on one subject's DWI (b-values in s/mm²): single-fibre WM (FA > 0.7), GM and CSF voxels from its own
DTI FA/MD (dipy, eroded); per shell, a prolate tensor (λ∥, λ⊥ in mm²/s) for every WM voxel and the mean
diffusivity (mm²/s) of GM and CSF; the SNR (PIESNO on the background, else the tensor-fit residuals). Then
draw --n-voxels voxels of 1-{MAX_FIBRES} fibres at random orientations with GM/CSF partial volumes and Rician noise
at that SNR (or --snr), on the subject's own gradient scheme. Modes: {"; ".join(f"{k}: {v}" for k, v in MODES.items())}.
--out (.npz) holds signals (N, V) float32 divided by each voxel's mean b=0 (dimensionless), signals_clean
(S0 = 1), tissue_fractions (N, 3: WM, GM, CSF, sum 1), fibre_fractions (N, 3), fibre_dirs (N, 3, 3) unit vectors
in the voxel-axis frame (NaN: no fibre), fibre_evals (N, 3, S, 2) per-shell (λ∥, λ⊥) in mm²/s, gm_md and csf_md
(N, S) mm²/s, n_fibres, bvals (s/mm²), bvecs (voxel-axis frame), shell_index, shell_bvals, snr, mode. --json
writes the calibrated statistics (voxel counts, mean GM/CSF MD, per-shell λ∥/λ⊥ summaries, SNR and method)."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``synth``."""
    parser = subparsers.add_parser("synth", help=COMMANDS["synth"], description=DESCRIPTION)
    add_input_args(parser)
    group = parser.add_argument_group("synthesis")
    group.add_argument(
        "--mode", choices=list(MODES), default=DEFAULT_MODE, help="synthesis mode (default: %(default)s)"
    )
    group.add_argument(
        "--n-voxels", type=positive_int, default=DEFAULT_VOXELS, metavar="N", help="voxels (default: %(default)s)"
    )
    group.add_argument("--seed", type=int, default=0, metavar="INT", help="seed of every draw (default: %(default)s)")
    group.add_argument(
        "--snr",
        type=positive_float,
        metavar="SNR",
        help="b=0 signal over the Rician noise σ of the synthetic voxels (default: the subject's estimate)",
    )
    group.add_argument("--out", type=Path, required=True, metavar="FILE", help="output .npz (refused if it exists)")
    group.add_argument("--json", type=Path, metavar="FILE", help="also write the calibrated statistics as JSON")
    group.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_threads_arg(group)
    add_verbosity_args(group)
    parser.set_defaults(run=run, prog=parser.prog)
    return parser


def run(args: argparse.Namespace) -> int:
    """Validate, calibrate, synthesise, write the archive (and the statistics)."""
    import numpy as np  # numpy and dipy: after the parse

    from equidmri.cli.common import recorded_arguments, set_threads
    from equidmri.dmri.io import check_outputs_free, load_dwi, save_json, save_npz
    from equidmri.synth import calibrate, synthesize

    outputs = [args.out] + ([args.json] if args.json is not None else [])
    if not str(args.out).endswith(".npz"):
        raise ValueError(f"--out must end in .npz, got {args.out}")
    if args.json is not None and args.json.resolve() == args.out.resolve():
        raise ValueError("--json and --out must be different files")
    check_outputs_free(outputs, args.force)
    for path in outputs:
        if not path.parent.is_dir():
            raise FileNotFoundError(f"directory of {path} does not exist: {path.parent}")
    set_threads(args)
    start = time.perf_counter()
    stats = calibrate(load_dwi(args.dwi, args.bvals, args.bvecs, args.mask))
    voxels = synthesize(stats, args.mode, args.n_voxels, np.random.default_rng(args.seed), snr=args.snr)
    save_npz(args.out, voxels.arrays(), force=args.force)
    seconds = time.perf_counter() - start
    if args.json is not None:
        record = {"version": __version__, "command": args.prog, "argv": args.argv}
        record |= {"arguments": recorded_arguments(args), **stats.summary(), "seconds": seconds}
        save_json(args.json, record, force=args.force)
    sys.stdout.write(
        f"{args.prog}: wrote {args.out} ({args.n_voxels} {args.mode} voxels, {stats.wm_lambda_par.shape[0]} WM "
        f"voxels, subject's SNR {stats.snr:.1f} by {stats.snr_method}, synthetic SNR {voxels.snr:.1f}) "
        f"in {seconds:.1f} s\n"
    )
    return EXIT_OK
