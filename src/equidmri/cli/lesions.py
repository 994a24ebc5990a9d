"""``equidmri lesions``: synthetic lesion sets, training of the lesion networks, lesion probability maps."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from equidmri.cli.commands import COMMANDS, EXIT_OK
from equidmri.cli.options import (
    add_input_args,
    add_run_args,
    non_negative_float,
    positive_float,
    positive_int,
)

MODEL_FILE, RUN_FILE = "model.pt", "run.json"
NETWORKS = ("pq", "cnn")  # equidmri.lesions.NETWORKS, without importing torch for --help
BACKGROUNDS = ("phantom", "small_64D", "small_101D")  # equidmri.sims.lesions.BACKGROUNDS
TRAIN_DEFAULTS = {"epochs": 20, "dice_weight": 0.0}  # equidmri.lesions.TrainConfig

DATA_DESCRIPTION = """\
Write a SYNTHETIC lesion set (no lesion data can be downloaded): white-matter lesions (ellipsoids, some with
satellites) with raised isotropic diffusivity, a lower fibre fraction and a T2-bright b=0, inserted into
multi-shell phantoms or into dipy's real small_64D / small_101D; splits train, val, test and test_rotated (the
test subjects tilted by exact 90° grid rotations). Each split is a cohort list OUT/<split>.tsv over
OUT/<split>/<subject>/ (dwi.nii.gz, bvals, bvecs, mask.nii.gz, labels.nii.gz). docs/lesions.md describes it."""

TRAIN_DESCRIPTION = f"""\
Train a lesion network on the train split of a lesion set (`equidmri lesions data`; the val split picks the best
epoch): pq = the SE(3)-equivariant p×q-space network of Müller et al. (arXiv:2102.06942), cnn = the 3D CNN on
the DWI volumes as channels. Writes {MODEL_FILE} and {RUN_FILE} into --out."""

PREDICT_DESCRIPTION = """\
Lesion probability map of one scan with a model of `equidmri lesions train`, written as NIfTI in the scan's grid
(0 outside --mask); with --threshold also the label map OUT_labels.nii.gz. OUT_run.json records the run."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``lesions data``, ``lesions train`` and ``lesions predict``."""
    parser = subparsers.add_parser("lesions", help=COMMANDS["lesions"], description=__doc__)
    commands = parser.add_subparsers(dest="lesions_command", required=True, metavar="{data,train,predict}")
    data = commands.add_parser("data", help="write a synthetic lesion set", description=DATA_DESCRIPTION)
    data.add_argument("--background", choices=BACKGROUNDS, default="phantom", help="(default: %(default)s)")
    for split, count in (("train", 8), ("val", 2), ("test", 4)):
        data.add_argument(f"--{split}", type=positive_int, default=count, metavar="N", help=f"{split} volumes")
    data.add_argument("--size", type=positive_int, default=10, metavar="N", help="phantom edge, voxels (>= 8)")
    data.add_argument("--snr", type=positive_float, nargs="+", default=[15.0, 30.0], help="SNRs, cycled over volumes")
    add_run_args(data, "DIR", "output directory (created; must be new or empty unless --force)", seed=True)
    data.set_defaults(run=run_data, prog="equidmri lesions data")

    train = commands.add_parser("train", help="train a lesion network", description=TRAIN_DESCRIPTION)
    train.add_argument("--data", type=Path, required=True, metavar="DIR", help="lesion set of `lesions data`")
    train.add_argument("--model", choices=NETWORKS, default="pq", help="network (default: %(default)s)")
    train.add_argument("--epochs", type=positive_int, default=TRAIN_DEFAULTS["epochs"], metavar="N")
    train.add_argument("--learning-rate", type=positive_float, help="Adam (default: 0.03 for pq, 0.01 for cnn)")
    train.add_argument(
        "--dice-weight", type=non_negative_float, default=TRAIN_DEFAULTS["dice_weight"], help="soft Dice term"
    )
    add_run_args(train, "DIR", "output directory (created; must be new or empty unless --force)", seed=True)
    train.set_defaults(run=run_train, prog="equidmri lesions train")

    predict = commands.add_parser("predict", help="lesion probability map of a scan", description=PREDICT_DESCRIPTION)
    predict.add_argument("--model", type=Path, required=True, metavar="FILE", help=f"DIR/{MODEL_FILE} of train")
    add_input_args(predict)
    predict.add_argument("--threshold", type=positive_float, metavar="T", help="also write labels: probability >= T")
    add_run_args(predict, "FILE", "probability map NIfTI (.nii or .nii.gz); refused if it exists", seed=False)
    predict.set_defaults(run=run_predict, prog="equidmri lesions predict")
    return parser


def _record(args: argparse.Namespace, start: float, **extra: object) -> dict:
    from equidmri.cli.common import run_record

    return run_record(args, **extra) | {"seconds": time.perf_counter() - start}


def run_data(args: argparse.Namespace) -> int:
    """Check the output folder, generate the splits, write them and ``run.json``."""
    from equidmri.cli.common import check_out_dir
    from equidmri.dmri.io import save_json
    from equidmri.sims.lesion_set import make_lesion_splits, write_lesion_set

    check_out_dir(args.out, force=args.force)
    if args.background == "phantom" and args.size < 8:
        raise ValueError(f"--size must be >= 8 voxels, got {args.size}")
    start = time.perf_counter()
    counts = (args.train, args.val, args.test)
    splits = make_lesion_splits(args.background, counts, size=args.size, snrs=tuple(args.snr), seed=args.seed)
    write_lesion_set(args.out, splits, force=args.force)
    save_json(args.out / RUN_FILE, _record(args, start, synthetic=True), force=True)
    sys.stdout.write(f"{args.prog}: wrote {sum(map(len, splits.values()))} synthetic volumes into {args.out}\n")
    return EXIT_OK


def run_train(args: argparse.Namespace) -> int:
    """Check the set and the output folder, load the train and val splits, train, write the model and ``run.json``."""
    from tqdm import tqdm

    from equidmri.cli.common import check_out_dir, set_threads, show_progress
    from equidmri.data import lesion_set_split
    from equidmri.dmri.io import prepare_out_dir, save_json
    from equidmri.lesions import LesionModel, parameter_count, save_lesion_model
    from equidmri.sims.lesion_set import load_lesion_split

    for split in ("train", "val"):
        for subject, _ in lesion_set_split(args.data, split):
            subject.check()
    check_out_dir(args.out, force=args.force)
    set_threads(args)
    start = time.perf_counter()
    train, val = load_lesion_split(args.data, "train"), load_lesion_split(args.data, "val")
    model = LesionModel(args.model, train[0].bvals, train[0].bvecs)
    with tqdm(total=args.epochs, desc=f"training {args.model}", disable=not show_progress(args)) as bar:
        fit = model.fit(
            train,
            val,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            dice_weight=args.dice_weight,
            seed=args.seed,
            progress=lambda epoch, loss: bar.update(1) or bar.set_postfix(loss=f"{loss:.4f}"),
        )
    prepare_out_dir(args.out, force=args.force)
    save_lesion_model(args.out / MODEL_FILE, fit)
    record = _record(args, start, network=args.model, parameters=parameter_count(fit.net), history=fit.history)
    save_json(args.out / RUN_FILE, record, force=True)
    sys.stdout.write(f"{args.prog}: wrote {args.out / MODEL_FILE} ({args.model}) in {record['seconds']:.1f} s\n")
    return EXIT_OK


def _beside(out: Path, suffix: str) -> Path:
    for extension in (".nii.gz", ".nii"):
        if out.name.endswith(extension):
            return out.with_name(out.name[: -len(extension)] + suffix)
    raise ValueError(f"--out must end in .nii or .nii.gz, got {out}")


def run_predict(args: argparse.Namespace) -> int:
    """Check the outputs, load the model and the scan, predict, write the maps and the run record."""
    from equidmri.cli.common import set_threads
    from equidmri.dmri.io import check_dwi, check_outputs_free, load_dwi, save_json, save_nifti
    from equidmri.dmri.mask import compute_mask
    from equidmri.lesions import load_lesion_model

    labels_out, run_out = _beside(args.out, "_labels.nii.gz"), _beside(args.out, "_run.json")
    outputs = [args.out, run_out] + ([labels_out] if args.threshold is not None else [])
    if args.threshold is not None and args.threshold > 1:
        raise ValueError(f"--threshold must be a probability in (0, 1], got {args.threshold}")
    check_dwi(args.dwi, args.bvals, args.bvecs, args.mask)
    check_outputs_free(outputs, args.force)
    if not args.out.parent.is_dir():
        raise FileNotFoundError(f"directory of --out does not exist: {args.out.parent}")
    set_threads(args)
    start = time.perf_counter()
    fit = load_lesion_model(args.model)
    data = load_dwi(args.dwi, args.bvals, args.bvecs, args.mask)
    mask = data.mask if data.mask is not None else compute_mask(data.dwi, data.gtab(), data.valid)
    probability = fit.predict(data.dwi, data.gtab(), mask)
    save_nifti(args.out, probability, data.affine, force=args.force)
    if args.threshold is not None:
        save_nifti(labels_out, (probability >= args.threshold).astype("uint8"), data.affine, force=args.force)
    save_json(run_out, _record(args, start, network=fit.network, threshold=args.threshold), force=args.force)
    sys.stdout.write(f"{args.prog}: wrote {args.out} ({fit.network})\n")
    return EXIT_OK
