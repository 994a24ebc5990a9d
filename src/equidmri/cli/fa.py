"""``equidmri fa``: train an FA regressor on simulated 6-direction data, and predict FA maps with it."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from equidmri import __version__
from equidmri.cli.commands import COMMANDS, EXIT_OK
from equidmri.cli.options import add_input_args, add_run_args, positive_float, positive_int
from equidmri.microstructure.config import B_VALUE, MODELS, ORIENTATIONS, SCHEME_NAMES, SNR, FATrainConfig

MODEL_FILE, RUN_FILE = "model.pt", "run.json"
DEFAULT_VOXELS = 8000  # simulated training voxels (as `equidmri bench fa`)

TRAIN_DESCRIPTION = f"""\
Simulate tissue-like diffusion tensors (WM/GM/CSF FA and MD, mm²/s), acquire them with a 6-direction
scheme at b = {B_VALUE:g} s/mm² plus one b=0 with Rician noise, and train an FA regressor on them: the FCN
(6 b0-normalised signals -> [100, 100, 10] -> FA) or the rotation-invariant spherical CNN (ADC profile of
the tensor fit on the HEALPix hemisphere -> FA). Adam, batch 32, MSE. Writes {MODEL_FILE} and {RUN_FILE}
into --out (Goodwin-Allcock et al., CDMRI 2022)."""

PREDICT_DESCRIPTION = """\
Predict an FA map (dimensionless, 0..1, not clipped) from a DWI series with at least one b=0 volume and
at least 6 non-collinear directions at the model's b-value (±20%, b-values in s/mm²), whatever the scheme.
The FCN uses the 6 acquired directions nearest to its training scheme; the S-CNN the tensor fitted to all
directions of that shell. Voxels outside the mask are 0."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``fa train`` and ``fa predict``."""
    parser = subparsers.add_parser("fa", help=COMMANDS["fa"], description=__doc__)
    commands = parser.add_subparsers(dest="fa_command", required=True, metavar="{train,predict}")
    train = commands.add_parser("train", help="train an FA regressor on simulated data", description=TRAIN_DESCRIPTION)
    train.add_argument("--model", choices=MODELS, default="scnn", help="network (default: %(default)s)")
    train.add_argument(
        "--scheme",
        choices=sorted(SCHEME_NAMES),
        default="skare",
        help="6-direction scheme of the training data (default: %(default)s)",
    )
    train.add_argument(
        "--orientation",
        choices=ORIENTATIONS,
        default="random",
        help="principal eigenvectors uniformly random, or all anterior-posterior (default: %(default)s)",
    )
    train.add_argument(
        "--n-voxels",
        type=positive_int,
        default=DEFAULT_VOXELS,
        metavar="N",
        help="simulated training voxels (default: %(default)s)",
    )
    train.add_argument(
        "--snr",
        type=positive_float,
        default=SNR,
        metavar="SNR",
        help="b=0 signal over the noise standard deviation (default: %(default)s)",
    )
    defaults = FATrainConfig()
    train.add_argument(
        "--epochs",
        type=positive_int,
        default=defaults.epochs,
        metavar="N",
        help="training epochs (default: %(default)s)",
    )
    train.add_argument(
        "--batch-size",
        type=positive_int,
        default=defaults.batch_size,
        metavar="N",
        help="voxels per step (default: %(default)s)",
    )
    train.add_argument(
        "--lr",
        type=positive_float,
        default=defaults.lr,
        metavar="RATE",
        help="Adam learning rate (default: %(default)s)",
    )
    train.add_argument("--seed", type=int, default=defaults.seed, help="seed of simulation and training")
    add_run_args(train, "DIR", "output directory (created; must be new or empty unless --force)")
    train.set_defaults(run=run_train, prog="equidmri fa train")

    predict = commands.add_parser(
        "predict", help="predict an FA map with a trained model", description=PREDICT_DESCRIPTION
    )
    predict.add_argument("--model", type=Path, required=True, metavar="FILE", help=f"DIR/{MODEL_FILE} of fa train")
    add_input_args(predict)
    add_run_args(predict, "FILE", "output FA NIfTI, e.g. fa.nii.gz (refused if it exists, unless --force)")
    predict.set_defaults(run=run_predict, prog="equidmri fa predict")
    return parser


def run_train(args: argparse.Namespace) -> int:
    """Simulate, train, write ``model.pt`` and ``run.json``."""
    import numpy as np  # numpy, torch and dipy: after the parse
    import torch

    from equidmri.cli.common import set_threads, show_progress
    from equidmri.dmri.io import prepare_out_dir, save_json
    from equidmri.microstructure import (
        FAModel,
        get_scheme,
        sample_tensors,
        scheme_gtab,
        simulate_acquisition,
        train_fa_model,
    )

    prepare_out_dir(args.out, force=args.force)
    set_threads(args)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    tensors = sample_tensors(args.n_voxels, rng, args.orientation)
    gtab = scheme_gtab(get_scheme(args.scheme))
    voxels = simulate_acquisition(tensors, gtab, rng, args.snr)
    model = FAModel(args.model, args.scheme)
    config = FATrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    losses = train_fa_model(model, voxels.signals, gtab, voxels.fa, config, progress=show_progress(args))
    model.save(args.out / MODEL_FILE)
    seconds = time.perf_counter() - start
    save_json(
        args.out / RUN_FILE,
        {
            "version": __version__,
            "command": args.prog,
            "argv": args.argv,
            "model": args.model,
            "scheme": args.scheme,
            "orientation": args.orientation,
            "n_voxels": args.n_voxels,
            "snr": args.snr,
            "bval": B_VALUE,
            "config": vars(config),
            "mse_per_epoch": losses,
            "seconds": seconds,
        },
        force=True,
    )
    sys.stdout.write(f"{args.prog}: wrote {args.out / MODEL_FILE} in {seconds:.1f} s (final MSE {losses[-1]:.4g})\n")
    return EXIT_OK


def run_predict(args: argparse.Namespace) -> int:
    """Validate everything, predict FA in the mask and write the NIfTI."""
    import numpy as np  # numpy, torch and dipy: after the parse

    from equidmri.cli.common import set_threads
    from equidmri.dmri.io import check_outputs_free, load_dwi, save_nifti
    from equidmri.dmri.mask import compute_mask
    from equidmri.microstructure import FAModel

    check_outputs_free([args.out], args.force)
    if not args.out.parent.is_dir():
        raise FileNotFoundError(f"directory of --out does not exist: {args.out.parent}")
    set_threads(args)
    model = FAModel.load(args.model)
    data = load_dwi(args.dwi, args.bvals, args.bvecs, args.mask)
    gtab = data.gtab()
    model.shell(gtab)  # raises on a missing b=0 or a degenerate scheme, before any computation
    mask = data.mask if data.mask is not None else compute_mask(data.dwi, gtab, data.valid)
    fa = np.zeros(mask.shape, dtype=np.float32)
    fa[mask] = model.predict(data.dwi[mask].astype(np.float64), gtab)
    save_nifti(args.out, fa, data.affine, force=args.force)
    sys.stdout.write(
        f"{args.prog}: wrote {args.out} ({int(mask.sum())} voxels, {model.name} trained on "
        f"{model.scheme}, {os.fspath(args.model)})\n"
    )
    return EXIT_OK
