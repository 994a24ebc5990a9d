"""Figures, tables and the verdict on the paper's targets for ``equidmri bench fa`` (see :mod:`equidmri.bench.fa`).

Every number on the page is read from the run record; the verdicts are computed, not written by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from equidmri.bench.report import fmt, header_lines, report_path
from equidmri.microstructure.networks import SCNN_CHANNELS, SCNN_CHEB_ORDER, SCNN_HIDDEN, SCNN_LMAX, SCNN_NSIDE
from equidmri.viz.fa import plot_error_boxplots, plot_fa_maps, plot_sphere_errors

ALPHA = 0.05  # significance level of the paired t-tests
WITHIN = 1.25  # "within 25%" (issue #6 targets), also used for "close" (10%-data S-CNN)
SEVERAL_FOLD = 2.0  # "grows several-fold": at least this ratio
TOP_BINS = ("0.6-0.8", "0.8-1.0")
BINS = ("0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0", "all")


def footer(record: dict[str, Any]) -> str:
    m = record["machine"]
    return f"{record['command']}  |  {m['cpu_model']}, {m['cores']} cores, {m['threads']} threads  |  {record['date']}"


def write_figures(
    args: argparse.Namespace,
    record: dict[str, Any],
    errors: dict,
    reference: np.ndarray,
    mask: np.ndarray,
    slice_maps: dict[str, np.ndarray],
    map_directions: np.ndarray,
) -> dict[str, str]:
    """Write the PNGs beside the page, ``OUT/<name>_<key>.png``; return figure key -> file name."""
    markdown = report_path(args, ".md")
    stem, bins, note = markdown.stem, record["settings"]["fa_bins"], footer(record)
    names = {}

    def path(key: str) -> Path:
        names[key] = f"{stem}_{key}.png"
        return markdown.parent / names[key]

    for source in ("sim", "small_64D"):
        groups = {
            f"{name} ({test.split('-')[1]})": errors["scheme", name, train, test]
            for name, train in (("fit", "none"), ("fcn", "sim-skare"), ("scnn", "sim-skare"))
            for test in (f"{source}-skare", f"{source}-jones")
        }
        plot_error_boxplots(
            path(f"scheme_{source.lower()}"),
            groups,
            bins,
            note,
            f"Experiment 1 ({source} test data): trained on simulated Skare, tested on Skare / Jones",
        )
    groups = {
        f"{name} ({train})": errors["orientation", name, train, "sim-skare"]
        for name, train in (
            ("fcn", "sim-skare"),
            ("fcn", "sim-skare-ap"),
            ("scnn", "sim-skare"),
            ("scnn", "sim-skare-ap"),
            ("scnn-10pct", "sim-skare-ap-10pct"),
        )
    }
    plot_error_boxplots(
        path("orientation_sim"),
        groups,
        bins,
        note,
        "Experiment 2 (sim test data, random orientations): unrestricted vs AP-only training",
    )
    z = int(np.argmax(mask.sum(axis=(0, 1))))
    reference_slice = np.where(mask, reference, np.nan)[:, :, z]
    plot_fa_maps(
        path("maps_small_64d"),
        reference_slice,
        {k: v[:, :, z] for k, v in slice_maps.items()},
        note,
        f"small_64D axial slice z = {z}: 6-direction inputs chosen from the 64 (Skare / Jones)",
    )
    maps = {k: np.array(v, dtype=float) for k, v in record["direction_maps"].items()}
    plot_sphere_errors(
        path("directions_sim"),
        map_directions,
        maps,
        note,
        f"Mean |FA error| by principal direction, sim test voxels with FA > {record['settings']['map_fa']}",
    )
    return names


def _rmse_table(record: dict[str, Any], experiment: str) -> list[str]:
    rows = {}
    for rec in record["records"]:
        if rec["experiment"] == experiment:
            rows.setdefault((rec["model"], rec["train"], rec["test"]), {})[rec["fa_bin"]] = rec
    lines = ["| model | train | test | " + " | ".join(BINS) + " |", "|---|---|---|" + "---|" * len(BINS)]
    for (model, train, test), cells in rows.items():
        values = " | ".join(f"{fmt(cells[b]['rmse'], '.3f')} ({cells[b]['n']})" for b in BINS)
        lines.append(f"| {model} | {train} | {test} | {values} |")
    return lines


def _ttest_table(tests: list[dict[str, Any]]) -> list[str]:
    lines = ["| model | train | a | b | FA range | n | RMSE a | RMSE b | t | p |", "|---" * 10 + "|"]
    for t in tests:
        lines.append(
            f"| {t['model']} | {t['train']} | {t['a']} | {t['b']} | {t['fa_range']} | {t['n']} | "
            f"{fmt(t['rmse_a'], '.3f')} | {fmt(t['rmse_b'], '.3f')} | {fmt(t['t'], '.2f')} | "
            f"{fmt(t['p'], '.2g')} |"
        )
    return lines


def _rmse(record: dict[str, Any], experiment: str, model: str, train: str, test: str, fa_bin: str) -> float | None:
    for rec in record["records"]:
        if (rec["experiment"], rec["model"], rec["train"], rec["test"], rec["fa_bin"]) == (
            experiment,
            model,
            train,
            test,
            fa_bin,
        ):
            return rec["rmse"]
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def target_lines(record: dict[str, Any]) -> list[str]:
    """The paper's findings, each with the measured numbers and a computed verdict, per test source."""
    lines = []
    for source in ("sim", "small_64D"):
        skare = f"{source}-skare"
        lines.append(f"Test data `{source}`:")
        for model, want_worse in (("fcn", True), ("scnn", False)):
            t = next(
                t
                for t in record["ttests"]
                if t["experiment"] == "scheme"
                and t["model"] == model
                and t["a"] == f"{source}-jones"
                and t["fa_range"] == "0.4-1.0"
            )
            worse = t["p"] is not None and t["p"] < ALPHA and t["t"] > 0
            verdict = _verdict(worse if want_worse else not worse)
            lines.append(
                f"- 1. {model}, FA > 0.4, Jones vs Skare: RMSE {fmt(t['rmse_a'], '.3f')} vs "
                f"{fmt(t['rmse_b'], '.3f')}, p = {fmt(t['p'], '.2g')} (paper: FCN significantly worse, "
                f"S-CNN not) → {verdict}"
            )
        for top in TOP_BINS:
            scnn = _ratio(
                _rmse(record, "orientation", "scnn", "sim-skare-ap", skare, top),
                _rmse(record, "orientation", "scnn", "sim-skare", skare, top),
            )
            fcn = _ratio(
                _rmse(record, "orientation", "fcn", "sim-skare-ap", skare, top),
                _rmse(record, "orientation", "fcn", "sim-skare", skare, top),
            )
            gap_a = _rmse(record, "orientation", "fcn", "sim-skare-ap", skare, top)
            gap_b = _rmse(record, "orientation", "scnn", "sim-skare-ap", skare, top)
            gap = None if gap_a is None or gap_b is None else gap_a - gap_b
            lines.append(
                f"- 2. FA {top}, AP-only / unrestricted RMSE: S-CNN ×{fmt(scnn, '.2f')} "
                f"(target ≤ {WITHIN}) → {_verdict(None if scnn is None else scnn <= WITHIN)}; FCN "
                f"×{fmt(fcn, '.2f')} (target ≥ {SEVERAL_FOLD}, several-fold) → "
                f"{_verdict(None if fcn is None else fcn >= SEVERAL_FOLD)}; FCN − S-CNN gap "
                f"{fmt(gap, '.3f')} (paper: 0.5 in the top bin)"
            )
        small = _ratio(
            _rmse(record, "orientation", "scnn-10pct", "sim-skare-ap-10pct", skare, "all"),
            _rmse(record, "orientation", "scnn", "sim-skare-ap", skare, "all"),
        )
        lines.append(
            f"- 2. S-CNN on 10% of the AP data / on all of it, RMSE over all FA: ×{fmt(small, '.2f')} "
            f"(target: close, ≤ {WITHIN}) → {_verdict(None if small is None else small <= WITHIN)}"
        )
        for model in ("fcn", "scnn"):
            t = next(t for t in record["ttests"] if t["model"] == f"{model} vs fit" and t["a"] == skare)
            better = t["p"] is not None and t["p"] < ALPHA and t["t"] < 0
            lines.append(
                f"- 3. {model} vs 6-direction fit on Skare, all FA: RMSE {fmt(t['rmse_a'], '.3f')} vs "
                f"{fmt(t['rmse_b'], '.3f')}, p = {fmt(t['p'], '.2g')} → {_verdict(better)}"
            )
        lines.append("")
    return lines


def render_markdown(record: dict[str, Any], figures: dict[str, str]) -> str:
    """The results page."""
    s = record["settings"]
    training = "; ".join(
        f"{t['model']} on {t['train']}: {t['n']} voxels, {t['seconds']:.0f} s, final MSE {t['final_mse']:.4f}"
        for t in record["training"]
    )
    invariance = [
        f"| {name} | {v['max_abs']:.2e} | {v['mean_abs']:.2e} | {v['n']} |" for name, v in record["invariance"].items()
    ]
    lines = [
        *header_lines("FA from 6-direction scans: FCN vs spherical CNN (Goodwin-Allcock et al., CDMRI 2022)", record),
        "## What trains and what tests",
        f"- **Training** (all networks): simulated voxels ({s['n_train']} tensors; WM/GM/CSF-like FA and MD, uniformly "
        f"random orientations), Skare 6-direction scheme at b = 1000 s/mm² with one b=0, Rician noise at SNR "
        f"{s['snr']:g}; Adam lr 1e-3, batch 32, MSE, {s['epochs']} epochs. The AP-only sets are the same tensors "
        f"rotated to e1 = AP (y), e2 = SI (z), with new noise; `scnn-10pct` uses the first "
        f"{100 * s['small_fraction']:.0f}% of them.",
        f"- **Test `sim`**: {s['n_test']} new simulated tensors (random orientations), acquired with Skare and with "
        "Jones (same tensors, independent noise at the same SNR).",
        "- **Test `small_64D`**: dipy's real 10×10×10 volume (b = 1000 s/mm², 64 directions, 1 b=0), median-Otsu "
        "mask; reference FA = WLS tensor fit to all 64 directions; inputs = the 6 acquired directions nearest "
        "(antipodally, without reuse) to the Skare or the Jones vectors, plus the b=0.",
        "- `fit` = dipy OLS tensor fit to the same 7 volumes (exactly determined). FCN: 6 b0-normalised "
        "signals → [100, 100, 10] ReLU → FA; its inputs are the test directions nearest (antipodally) to the "
        "Skare vectors, in Skare order, so on Jones data it sees the Jones signals matched to the Skare "
        "directions it was trained on (not in arbitrary order). S-CNN: ADC profile of the 6-direction tensor "
        f"fit on the HEALPix hemisphere (nside {SCNN_NSIDE}) → spherical convolutions with {SCNN_CHEB_ORDER} "
        "Chebyshev polynomials of the Laplace-Beltrami operator on SH of even degree "
        f"<= {SCNN_LMAX} (exact isotropic filters), channels {SCNN_CHANNELS}, GELU → mean over the sphere with "
        f"weights exact up to SH degree {SCNN_LMAX} (rotation invariant) → {SCNN_HIDDEN} → 1.",
        f"- Training: {training}. Total run time {record['seconds']:.0f} s.",
        "",
        "## Targets of the issue (computed from the numbers below)",
        "",
        *target_lines(record),
        "## Experiment 1: gradient-scheme robustness (RMSE of FA, n in parentheses)",
        "",
        *_rmse_table(record, "scheme"),
        "",
        f"![scheme sim]({figures['scheme_sim']})",
        f"![scheme small_64D]({figures['scheme_small_64d']})",
        f"![maps]({figures['maps_small_64d']})",
        "",
        "Paired t-tests on squared errors (same voxels; t > 0: a has larger errors):",
        "",
        *_ttest_table(record["ttests"]),
        "",
        "## Experiment 2: orientation robustness (RMSE of FA, n in parentheses)",
        "",
        *_rmse_table(record, "orientation"),
        "",
        f"![orientation]({figures['orientation_sim']})",
        f"![directions]({figures['directions_sim']})",
        "",
        "## Rotation invariance (|ΔFA| of the prediction when the noise-free input tensor is rotated at random)",
        "",
        "| model (training set) | max | mean | voxels |",
        "|---|---|---|---|",
        *invariance,
        "",
        "The S-CNN target is max |ΔFA| < 1e-3; the FCN is not designed to be invariant (shown for contrast). "
        "The readout's weighted sphere mean is exact for band-limited features (plain HEALPix pixel means are not "
        "rotation invariant even for the degree-2 ADC profile) and the filters commute with rotations up to SH "
        f"degree {SCNN_LMAX}; what remains comes from the degrees above {SCNN_LMAX} that the nonlinearity creates "
        "and the grid aliases.",
    ]
    return "\n".join(lines)
