"""``equidmri harmonize``: learn a cross-scanner harmonization from two cohorts, and apply it to a scan."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from equidmri.cli.commands import COMMANDS, EXIT_OK
from equidmri.cli.options import COHORT_HELP, add_input_args, add_run_args
from equidmri.harmonize.registry import HARMONIZERS, find_harmonizer

MODEL_FILE, RUN_FILE = "model.pt", "run.json"
DEFAULT_METHOD = "RISH-global"  # real cohorts are not in one template space: no voxel-wise scale maps
GRADIENT_SUFFIXES = (".bval", ".bvec")  # beside the output NIfTI: FSL files of the reference protocol

TRAIN_DESCRIPTION = f"""\
Learn to map scans of the target site (A) onto the reference site (B): the per-shell SH resampling onto B's
directions and, for RISH, per-shell and per-degree scales of the rotation-invariant SH features (Mirzaalian et
al. 2016; Cetin Karayumak et al. 2019); SH-ResNet (supervised, needs --paired) and cyclic (unsupervised, or
semi-supervised with --paired) are networks on the per-shell SH coefficients. The two cohorts need not hold the
same subjects. Every reference scan
must have the same protocol (it becomes the output protocol); every target shell must be one of its shells
(b-values in s/mm², within 20 s/mm²). Writes {MODEL_FILE} and {RUN_FILE} into --out. Methods:
{", ".join(h.name for h in HARMONIZERS)} (docs/harmonization.md)."""

APPLY_DESCRIPTION = """\
Harmonize one target-site scan with a model of `equidmri harmonize train`: writes the NIfTI --out on the reference
protocol (its b=0 volumes and the shells the scan has) and the FSL gradient files beside it (OUT.bval, OUT.bvec,
for the scan's affine). B-vectors are carried in the voxel-axis frame: both sites' images must share the
orientation of their voxel axes (e.g. both in one template space). Voxels outside --mask, when given, are 0."""


def method_choice(text: str) -> str:
    """A registered harmonizer's name, any case (argparse ``type``)."""
    try:
        return find_harmonizer(text).name
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def paired_indices(paired: list[str], target: list, reference: list, method: str) -> list[tuple[int, int]]:
    """``(i, j)`` of each ``--paired`` subject: its index in the target and in the reference cohort.

    Raises
    ------
    ValueError
        If ``method`` uses no pairs, or a subject is not in both cohorts or is named twice.
    """
    if not paired:
        return []
    if not find_harmonizer(method).uses_pairs:
        raise ValueError(f"--paired: {method} does not use paired scans")
    if len(set(paired)) != len(paired):
        raise ValueError(f"--paired names a subject twice: {paired}")
    indices = []
    for name in paired:
        where = [[k for k, subject in enumerate(site) if subject.subject == name] for site in (target, reference)]
        if not all(where):
            raise ValueError(f"--paired subject {name!r} is not in both cohorts")
        indices.append((where[0][0], where[1][0]))
    return indices


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``harmonize train`` and ``harmonize apply``."""
    parser = subparsers.add_parser("harmonize", help=COMMANDS["harmonize"], description=__doc__)
    commands = parser.add_subparsers(dest="harmonize_command", required=True, metavar="{train,apply}")
    train = commands.add_parser("train", help="learn a harmonization from two cohorts", description=TRAIN_DESCRIPTION)
    for option, site in (("--reference-site", "the reference site B"), ("--target-site", "the target site A")):
        train.add_argument(option, type=Path, required=True, metavar="TSV", help=f"{site}: {COHORT_HELP}")
    train.add_argument("--method", type=method_choice, default=DEFAULT_METHOD, help="harmonizer (default: %(default)s)")
    train.add_argument(
        "--paired",
        nargs="+",
        default=[],
        metavar="SUBJECT",
        help="subjects (the cohorts' subject column) scanned on both sites, on one grid: the paired loss terms of "
        "the learned methods use them (SH-ResNet needs some; cyclic trains unsupervised without)",
    )
    train.add_argument(
        "--steps", type=positive_int, metavar="N", help="training steps of a learned method (default: the method's)"
    )
    add_run_args(train, "DIR", "output directory (created; must be new or empty unless --force)")
    train.set_defaults(run=run_train, prog="equidmri harmonize train")

    apply = commands.add_parser("apply", help="harmonize one scan with a trained model", description=APPLY_DESCRIPTION)
    apply.add_argument("--model", type=Path, required=True, metavar="FILE", help=f"DIR/{MODEL_FILE} of harmonize train")
    add_input_args(apply)
    add_run_args(apply, "FILE", "output NIfTI (.nii or .nii.gz), e.g. harmonized.nii.gz; refused if it exists")
    apply.set_defaults(run=run_apply, prog="equidmri harmonize apply")
    return parser


def run_train(args: argparse.Namespace) -> int:
    """Check both cohorts and the output folder, load the scans, fit, write the model and ``run.json``."""
    from dataclasses import replace

    from tqdm import tqdm

    from equidmri.cli.common import check_out_dir, run_record, set_threads, show_progress
    from equidmri.data import read_cohort
    from equidmri.dmri.io import prepare_out_dir, save_json
    from equidmri.dmri.mask import compute_mask
    from equidmri.harmonize import get_harmonizer
    from equidmri.harmonize.model_file import save_harmonizer

    sites = {"target": read_cohort(args.target_site), "reference": read_cohort(args.reference_site)}
    for subjects in sites.values():
        for subject in subjects:
            subject.check()
    pairs = paired_indices(args.paired, sites["target"], sites["reference"], args.method)
    entry = find_harmonizer(args.method)
    if args.steps is not None and not entry.learned:
        raise ValueError(f"--steps: {args.method} is not a learned method")
    options = {} if args.steps is None else {"steps": args.steps}
    if entry.uses_pairs and entry.learned and "paired_percent" not in entry.options and not pairs:
        raise ValueError(f"{args.method} is supervised: name the subjects scanned on both sites with --paired")
    check_out_dir(args.out, force=args.force)
    set_threads(args)
    start = time.perf_counter()
    scans = {}
    for site, subjects in sites.items():
        scans[site] = []
        for subject in tqdm(subjects, desc=f"loading the {site} site", disable=not show_progress(args)):
            data = subject.load()
            mask = data.mask if data.mask is not None else compute_mask(data.dwi, data.gtab(), data.valid)
            scans[site].append(replace(data, mask=mask))
    harmonizer = get_harmonizer(args.method, **options)
    harmonizer.progress = show_progress(args)  # the learned methods' training steps
    if pairs:
        harmonizer.fit_sites(scans["target"], scans["reference"], pairs=pairs)
    else:
        harmonizer.fit_sites(scans["target"], scans["reference"])
    prepare_out_dir(args.out, force=args.force)
    save_harmonizer(args.out / MODEL_FILE, args.method, harmonizer)
    seconds = time.perf_counter() - start
    record = run_record(
        args,
        method=args.method,
        subjects={site: [s.subject for s in subjects] for site, subjects in sites.items()},
        paired=list(args.paired),
        reference_bvals=sorted({round(float(b)) for b in harmonizer.reference_bvals}),
        seconds=seconds,
    )
    save_json(args.out / RUN_FILE, record, force=True)
    sys.stdout.write(f"{args.prog}: wrote {args.out / MODEL_FILE} ({args.method}) in {seconds:.1f} s\n")
    return EXIT_OK


def gradient_paths(out: Path) -> tuple[Path, Path]:
    """``OUT.bval`` and ``OUT.bvec`` beside the NIfTI ``out`` (its name without ``.nii``/``.nii.gz``).

    Raises
    ------
    ValueError
        If ``out`` does not end in ``.nii`` or ``.nii.gz``.
    """
    for suffix in (".nii.gz", ".nii"):
        if out.name.endswith(suffix):
            stem = out.name[: -len(suffix)]
            return tuple(out.with_name(stem + extension) for extension in GRADIENT_SUFFIXES)
    raise ValueError(f"--out must end in .nii or .nii.gz, got {out}")


def run_apply(args: argparse.Namespace) -> int:
    """Check the outputs, load the model and the scan, harmonize, write the NIfTI and its gradients."""
    from equidmri.cli.common import set_threads
    from equidmri.dmri.io import check_outputs_free, load_dwi, save_fsl_gradients, save_nifti
    from equidmri.harmonize.model_file import load_harmonizer

    bvals_out, bvecs_out = gradient_paths(args.out)
    check_outputs_free([args.out, bvals_out, bvecs_out], args.force)
    if not args.out.parent.is_dir():
        raise FileNotFoundError(f"directory of --out does not exist: {args.out.parent}")
    set_threads(args)
    name, harmonizer = load_harmonizer(args.model)
    data = load_dwi(args.dwi, args.bvals, args.bvecs, args.mask)
    harmonized = harmonizer.apply(data.dwi, data.gtab())
    dwi = harmonized.dwi
    if data.mask is not None:
        dwi[~data.mask] = 0.0
    save_nifti(args.out, dwi, data.affine, force=args.force)
    save_fsl_gradients(bvals_out, bvecs_out, harmonized.bvals, harmonized.bvecs, data.affine, force=args.force)
    sys.stdout.write(f"{args.prog}: wrote {args.out}, {bvals_out.name} and {bvecs_out.name} ({name})\n")
    return EXIT_OK
