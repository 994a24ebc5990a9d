"""``equidmri denoise``: train a voxel-wise denoiser on a scan's own voxels, and apply it to a scan."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from equidmri.cli.commands import COMMANDS, EXIT_OK
from equidmri.cli.options import add_input_args, add_run_args, positive_float, positive_int
from equidmri.denoise.defaults import (
    ACTIVATION_NAMES,
    DEFAULT_ACTIVATION,
    DEFAULT_COPIES,
    DEFAULT_EPOCHS,
    DEFAULT_LAYER,
    DEFAULT_SNRS,
    DEFAULT_SPACE,
    DEFAULT_WIDTH,
    LAYERS,
    SPACES,
)

MODEL_FILE, RUN_FILE = "model.pt", "run.json"

TRAIN_DESCRIPTION = f"""\
Train a voxel-wise denoiser on the scan's own voxels (inside --mask, default: computed): each measured signal is
the target, the same signal with Rician noise added at each --snr (b=0 signal over σ, --copies realisations) the
input; both divided by the noisy voxel's mean b=0; the diffusion-weighted volumes only (b=0 volumes pass through).
Layers: {"; ".join(f"{k}: {v}" for k, v in LAYERS.items())}. --space: apply the activation to function values
(signal) or to SH coefficients (sh; not for dense). Writes {MODEL_FILE} (weights only) and {RUN_FILE} into --out.
Results of every combination against dipy's MP-PCA and Patch2Self: docs/results/spherical_layers.md."""

APPLY_DESCRIPTION = f"""\
Denoise one scan with a model of `equidmri denoise train`: writes the NIfTI --out (b=0 volumes unchanged, voxels
outside --mask unchanged) and its run record OUT.json (OUT without .nii/.nii.gz). A spherical model applies to any
scheme with the training shells (b-values in s/mm², within 20); the dense one only to the training acquisition.
Writes nothing if the inputs are invalid; an existing output needs --force. Model: DIR/{MODEL_FILE}."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``denoise train`` and ``denoise apply``."""
    parser = subparsers.add_parser("denoise", help=COMMANDS["denoise"], description=__doc__)
    commands = parser.add_subparsers(dest="denoise_command", required=True, metavar="{train,apply}")
    train = commands.add_parser("train", help="train a denoiser on a scan's voxels", description=TRAIN_DESCRIPTION)
    add_input_args(train)
    group = train.add_argument_group("network and training")
    group.add_argument("--layer", choices=list(LAYERS), default=DEFAULT_LAYER, help="layer (default: %(default)s)")
    group.add_argument(
        "--activation", choices=ACTIVATION_NAMES, default=DEFAULT_ACTIVATION, help="activation (default: %(default)s)"
    )
    group.add_argument("--space", choices=SPACES, default=DEFAULT_SPACE, help="activation space (default: %(default)s)")
    group.add_argument(
        "--width", type=positive_int, default=DEFAULT_WIDTH, metavar="C", help="hidden channels (default: %(default)s)"
    )
    group.add_argument(
        "--epochs", type=positive_int, default=DEFAULT_EPOCHS, metavar="N", help="epochs (default: %(default)s)"
    )
    group.add_argument(
        "--snr", type=positive_float, nargs="+", default=list(DEFAULT_SNRS), metavar="SNR",
        help="SNRs of the added noise, b=0 signal over Rician σ (default: %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--copies", type=positive_int, default=DEFAULT_COPIES, metavar="N",
        help="noise realisations per voxel and SNR (default: %(default)s)",
    )  # fmt: skip
    add_run_args(train, "DIR", "output directory (created; must be new or empty unless --force)", seed=True)
    train.set_defaults(run=run_train, prog="equidmri denoise train")

    apply = commands.add_parser("apply", help="denoise one scan with a trained model", description=APPLY_DESCRIPTION)
    apply.add_argument("--model", type=Path, required=True, metavar="FILE", help=f"DIR/{MODEL_FILE} of denoise train")
    add_input_args(apply)
    add_run_args(apply, "FILE", "output NIfTI (.nii or .nii.gz), e.g. denoised.nii.gz; refused if it exists")
    apply.set_defaults(run=run_apply, prog="equidmri denoise apply")
    return parser


def mask_of(data):
    """The scan's mask: ``--mask`` when given, else :func:`equidmri.dmri.mask.compute_mask`."""
    from equidmri.dmri.mask import compute_mask

    return data.mask if data.mask is not None else compute_mask(data.dwi, data.gtab(), data.valid) & data.valid


def run_train(args: argparse.Namespace) -> int:
    """Check the inputs and the output folder, train, write the model and ``run.json``."""
    from equidmri.cli.common import check_out_dir, run_record, set_threads, show_progress
    from equidmri.denoise import DenoiseConfig, DenoiserSpec, save_denoiser, train_denoiser
    from equidmri.dmri.io import load_dwi, prepare_out_dir, save_json

    spec = DenoiserSpec(layer=args.layer, activation=args.activation, space=args.space, width=args.width)
    check_out_dir(args.out, force=args.force)
    set_threads(args)
    start = time.perf_counter()
    data = load_dwi(args.dwi, args.bvals, args.bvecs, args.mask)
    mask = mask_of(data)
    config = DenoiseConfig(epochs=args.epochs, snrs=tuple(args.snr), copies=args.copies, seed=args.seed)
    network, losses = train_denoiser(spec, data.dwi[mask], data.bvals, data.bvecs, config, progress=show_progress(args))
    prepare_out_dir(args.out, force=args.force)
    training = {"voxels": int(mask.sum()), "snrs": list(config.snrs), "epochs": config.epochs, "seed": config.seed}
    save_denoiser(args.out / MODEL_FILE, network, data.bvals, data.bvecs, training)
    seconds = time.perf_counter() - start
    record = run_record(args, spec=spec.to_dict(), **training, final_mse=losses[-1], seconds=seconds)
    save_json(args.out / RUN_FILE, record, force=True)
    sys.stdout.write(
        f"{args.prog}: wrote {args.out / MODEL_FILE} ({spec.name}, {mask.sum()} voxels) in {seconds:.1f} s\n"
    )
    return EXIT_OK


def record_path(out: Path) -> Path:
    """``OUT.json`` beside the NIfTI ``out``.

    Raises
    ------
    ValueError
        If ``out`` does not end in ``.nii`` or ``.nii.gz``.
    """
    for suffix in (".nii.gz", ".nii"):
        if out.name.endswith(suffix):
            return out.with_name(out.name[: -len(suffix)] + ".json")
    raise ValueError(f"--out must end in .nii or .nii.gz, got {out}")


def run_apply(args: argparse.Namespace) -> int:
    """Check the outputs, load the scan and the model, denoise the mask's voxels, write the NIfTI and its record."""
    from equidmri.cli.common import run_record, set_threads
    from equidmri.denoise import apply_denoiser, load_denoiser
    from equidmri.dmri.io import check_outputs_free, load_dwi, save_json, save_nifti

    record_file = record_path(args.out)
    check_outputs_free([args.out, record_file], args.force)
    if not args.out.parent.is_dir():
        raise FileNotFoundError(f"directory of --out does not exist: {args.out.parent}")
    if not args.model.is_file():
        raise FileNotFoundError(f"--model {args.model} does not exist")
    set_threads(args)
    start = time.perf_counter()
    data = load_dwi(args.dwi, args.bvals, args.bvecs, args.mask)
    network, meta = load_denoiser(args.model, data.bvals, data.bvecs)
    mask = mask_of(data)
    dwi = data.dwi.astype("float64")
    dwi[mask] = apply_denoiser(network, dwi[mask], data.bvals)
    save_nifti(args.out, dwi.astype(data.dwi.dtype), data.affine, force=args.force)
    seconds = time.perf_counter() - start
    save_json(record_file, run_record(args, spec=meta["spec"], voxels=int(mask.sum()), seconds=seconds), force=True)
    sys.stdout.write(f"{args.prog}: wrote {args.out} ({network.spec.name}, {mask.sum()} voxels) in {seconds:.1f} s\n")
    return EXIT_OK
