"""``equidmri evaluate``: score predicted peaks (or an SH fODF) against a phantom's ground truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from equidmri.cli.commands import COMMANDS, EXIT_OK
from equidmri.eval.protocol import CONE_DEG, SH_BASES, THRESHOLD_VALUES

DESCRIPTION = f"""\
Daducci et al. (IEEE TMI 2014) scores as the SHD paper uses them: predicted peaks matched to ground-truth
fibres within a {CONE_DEG:g} degree cone (antipodal), mean angular error of the matches, FPR, FNR,
precision, recall and F1 at the {len(THRESHOLD_VALUES)} relative amplitude thresholds
{THRESHOLD_VALUES[0]:g}..{THRESHOLD_VALUES[-1]:g}, and PR-AUC. Peaks and ground truth are compared in world
coordinates. Voxels: the ground truth's mask with at least one fibre, unless --mask is given. Choose the
threshold on a validation volume and pass it with --threshold for the test volume."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``evaluate``."""
    parser = subparsers.add_parser("evaluate", help=COMMANDS["evaluate"], description=DESCRIPTION)
    parser.add_argument(
        "--gt", type=Path, required=True, metavar="DIR", help="phantom volume directory (gt_peaks.nii.gz, mask.nii.gz)"
    )
    pred = parser.add_mutually_exclusive_group(required=True)
    pred.add_argument("--pred-peaks", type=Path, metavar="FILE", help="peaks (X, Y, Z, 3P), world frame")
    pred.add_argument("--pred-fod", type=Path, metavar="FILE", help="SH fODF (X, Y, Z, K), world frame")
    parser.add_argument(
        "--pred-values",
        type=Path,
        metavar="FILE",
        help="peak amplitudes (X, Y, Z, P) (default: the norms of the peak vectors)",
    )
    parser.add_argument("--basis", choices=SH_BASES, default="tournier07", help="SH basis of --pred-fod")
    parser.add_argument("--mask", type=Path, metavar="FILE", help="voxels to evaluate (NIfTI, > 0 inside)")
    parser.add_argument(
        "--threshold",
        type=float,
        metavar="TAU",
        help="also report the scores at this relative threshold (e.g. the validation's best)",
    )
    parser.add_argument("--json", type=Path, required=True, metavar="OUT", help="scores as JSON")
    parser.add_argument("--force", action="store_true", help="overwrite --json")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    parser.set_defaults(run=run, prog=parser.prog)
    return parser


def run(args: argparse.Namespace) -> int:
    """Load, check frames and shapes, score, write the JSON."""
    import numpy as np  # numpy, nibabel and dipy after the parse

    from equidmri.dmri.io import AFFINE_ATOL, check_outputs_free, load_nifti_volume, save_json
    from equidmri.eval.metrics import at_threshold, score_thresholds
    from equidmri.eval.peak_files import load_ground_truth, load_peak_field, peaks_from_fod

    check_outputs_free([args.json], args.force)
    if args.pred_values is not None and args.pred_peaks is None:
        raise ValueError("--pred-values goes with --pred-peaks")
    gt_dirs, mask, gt_affine = load_ground_truth(args.gt)
    if args.mask is not None:
        mask = np.asarray(load_nifti_volume(args.mask)[0]) > 0
    if args.pred_peaks is not None:
        dirs, values, affine = load_peak_field(args.pred_peaks, args.pred_values)
    else:
        fodf_sh, affine = load_nifti_volume(args.pred_fod)
        dirs, values = peaks_from_fod(np.asarray(fodf_sh), args.basis, mask)
    if dirs.shape[:3] != gt_dirs.shape[:3] or mask.shape != gt_dirs.shape[:3]:
        raise ValueError(
            f"prediction {dirs.shape[:3]}, mask {mask.shape} and ground truth "
            f"{gt_dirs.shape[:3]} must share the voxel grid"
        )
    if not np.allclose(affine, gt_affine, atol=AFFINE_ATOL):
        raise ValueError("the prediction's affine differs from the ground truth's; peaks would be in other frames")
    scores = score_thresholds(gt_dirs[mask], dirs[mask], values[mask])
    if args.threshold is not None:
        scores["at_threshold"] = at_threshold(scores, args.threshold)
    save_json(args.json, {"argv": args.argv, **scores}, force=args.force)
    best = scores.get("at_threshold", scores["best"])
    sys.stdout.write(
        f"{args.prog}: threshold {best['threshold']:g}: angle {best['angle_deg']:.2f} deg, "
        f"F1 {best['f1']:.3f}, PR-AUC {scores['pr_auc']:.3f}; wrote {args.json}\n"
    )
    return EXIT_OK
