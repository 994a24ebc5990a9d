"""``equidmri demo``: deconvolve dipy's bundled ``small_64D`` volume and compare the peaks with dipy's CSD."""

from __future__ import annotations

import argparse
import sys

from equidmri.cli.commands import COMMANDS, EXIT_OK
from equidmri.cli.options import add_common_args, add_output_args, add_pretrained_args, add_training_args
from equidmri.eval.protocol import CONE_DEG

DEMO_DATA = "small_64D"  # dipy's bundled 10x10x10 volume (equidmri.data.REAL_VOLUMES)
CSD_METHOD = "CSD (lmax 8)"  # the reference of the agreement (equidmri.methods)
AGREEMENT_FA = 0.4  # dimensionless; the agreement counts mask voxels with DTI FA above this
CSD_PEAKS, CSD_PEAK_VALUES, DEMO_JSON = "csd_peaks.nii.gz", "csd_peak_values.nii.gz", "demo.json"

DESCRIPTION = f"""\
Run `equidmri deconv` on dipy's bundled {DEMO_DATA} volume (no download), fit dipy's CSD (lmax 8) with
the same WM response and mask, and report the fraction of mask voxels with FA > {AGREEMENT_FA} whose
main peaks agree within {CONE_DEG:g} degrees, with the mean and median angles. Writes the deconv
outputs, {CSD_PEAKS}, {CSD_PEAK_VALUES} and {DEMO_JSON} into --out."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``demo``."""
    parser = subparsers.add_parser("demo", help=COMMANDS["demo"], description=DESCRIPTION)
    add_common_args(parser)
    add_pretrained_args(parser)
    add_training_args(parser)
    add_output_args(parser)
    parser.set_defaults(run=run, prog=parser.prog)
    return parser


def run(args: argparse.Namespace) -> int:
    """Deconvolve ``small_64D``, fit CSD, compare the main peaks and write ``demo.json``."""
    from equidmri.cli.common import deconvolve, peak_kwargs, report_success  # torch: after the parse
    from equidmri.data import real_volume_paths
    from equidmri.dmri.baselines import fit_dti_fa
    from equidmri.dmri.io import save_json, save_peaks
    from equidmri.eval.agreement import main_peak_agreement
    from equidmri.methods import get_method
    from equidmri.recon.pipeline import timed

    dwi, bvals, bvecs = real_volume_paths(DEMO_DATA)
    prepared, result, record = deconvolve(args, dwi, bvals, bvecs, None)
    timings = dict(record["timings"])
    with timed(timings, "csd"):
        csd = get_method(CSD_METHOD, prepared.gtab, prepared.responses).fit(prepared.data.dwi, prepared.mask)
        csd_dirs, csd_values = csd.peaks(**peak_kwargs(args))
    timings["total"] = round(timings.pop("total") + timings["csd"], 3)  # keeps "total" last
    save_peaks(args.out / CSD_PEAKS, args.out / CSD_PEAK_VALUES, csd_dirs, csd_values, prepared.data.affine, force=True)
    fa = fit_dti_fa(prepared.data.dwi, prepared.gtab, prepared.mask)
    agreement = main_peak_agreement(result.peak_dirs, csd_dirs, prepared.mask & (fa > AGREEMENT_FA))
    summary = {
        "data": DEMO_DATA,
        "out": args.out,
        "fa_threshold": AGREEMENT_FA,
        "cone_deg": CONE_DEG,
        **agreement,
        "epochs": record["epochs_trained"],
        "timings": timings,
    }
    save_json(args.out / DEMO_JSON, summary, force=True)
    report_success(record, args.out)
    sys.stdout.write(
        f"main peaks vs dipy CSD in {agreement['n_voxels']} voxels with FA > {AGREEMENT_FA}: "
        f"{100 * agreement['fraction_within_cone']:.1f}% within {CONE_DEG:g} deg, "
        f"mean {agreement['mean_angle_deg']:.1f} deg, median {agreement['median_angle_deg']:.1f} deg\n"
        f"timings (s): {', '.join(f'{k} {v:.1f}' for k, v in timings.items())}\n"
    )
    return EXIT_OK
