"""``equidmri bench harmonize``: the registered harmonizers on a simulated two-scanner cohort (issue 20).

The cohort, the methods, the errors and the options: :mod:`equidmri.bench.options.harmonize`
(``equidmri bench harmonize --help``); the simulation: docs/harmonization.md.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np

from equidmri.bench.fa_report import footer
from equidmri.bench.options.harmonize import DEFAULTS, QUICK
from equidmri.bench.report import fmt, header_lines, plural, start_figure_report, write_report
from equidmri.dmri.baselines import fit_csd
from equidmri.dmri.gradients import B0_THRESHOLD, SHELL_TOL, make_gtab
from equidmri.dmri.peaks import find_peaks
from equidmri.eval.agreement import main_peak_agreement
from equidmri.harmonize import HARMONIZERS, combat, get_harmonizer, harmonization_errors, split_cohort, wilcoxon_test
from equidmri.harmonize.metrics import LOWER_IS_BETTER, NOISE_FREE_METRIC, dti_maps_by_shell
from equidmri.harmonize.registry import HarmonizerMethod, find_harmonizer
from equidmri.harmonize.shells import attenuation, mean_b0
from equidmri.harmonize.subjects import PAIRED_PERCENTS, PairedSubject
from equidmri.sims.scanners import REAL_VOLUME, SCANNER_A, SCANNER_B, paired_cohort, real_pair
from equidmri.viz.fa import plot_maps_with_errors

logger = logging.getLogger(__name__)

COLUMNS = {  # metric -> (unit factor, column heading); the paper's Table 1 units
    "signal_mse": (1e-3, "signal MSE (1e-3)"),
    "fa_mse": (1e-3, "FA MSE (1e-3)"),
    "md_mse": (1e-8, "MD MSE (1e-8 mm⁴/s²)"),
    "ssim": (1.0, "SSIM"),
    NOISE_FREE_METRIC: (1e-3, "signal MSE vs noise-free B (1e-3)"),
}
BASELINE = "baseline"  # the row every method is also tested against
FIGURE_SHELL = 1000.0  # s/mm²; the figure shows B's first volume of this shell
FIGURE_ERROR_MAX = 0.15  # attenuation; upper end of the figure's error colour scale
FIGURE_ROWS = ("baseline", "RISH", "SH-ResNet", "cyclic (unsupervised)", "cyclic (supervised)")
CSD_SHELL = 2000.0  # s/mm²; the downstream CSD uses this shell of B's protocol and the b=0 volumes
CSD_LMAX = 6  # fODF degree of the downstream CSD
CSD_RESPONSE_EVALS = (1.7e-3, 0.3e-3, 0.3e-3)  # mm²/s; fixed WM response (the phantoms' bundles: 1.5-1.9 / 0.2-0.4)
WM_FRACTION = 0.5  # voxels with at least this WM fraction are compared downstream
COMBAT_ROW = "ComBat (FA, MD maps)"
COMBAT_MD_UNIT = 1e-3  # mm²/s; ComBat sees MD in µm²/ms (a linear rescaling, which ComBat's standardization undoes)


def bench_rows(steps: int) -> list[tuple[str, str, dict[str, Any]]]:
    """``(row, registered name, options)`` of every row: each registered harmonizer once; one with a
    ``paired_percent`` option once per training mode (unsupervised, each of :data:`PAIRED_PERCENTS` below 100,
    supervised); learned ones with ``steps`` training steps."""
    rows = []
    for harmonizer in HARMONIZERS:
        options = {"steps": steps} if harmonizer.learned else {}
        if "paired_percent" not in harmonizer.options:
            rows.append((harmonizer.name, harmonizer.name, options))
            continue
        for percent in (0, *PAIRED_PERCENTS):
            mode = {0: "unsupervised", 100: "supervised"}.get(percent, f"{percent} % paired")
            rows.append((f"{harmonizer.name} ({mode})", harmonizer.name, {**options, "paired_percent": percent}))
    return rows


def evaluate(
    name: str, options: dict[str, Any], train: list[PairedSubject], subjects: list[PairedSubject]
) -> tuple[HarmonizerMethod, dict[str, Any]]:
    """Fit harmonizer ``name`` with ``options`` on ``train`` and score it on each subject: the harmonizer, times,
    per-subject errors (against B's noise-free signal too) and the harmonized scans."""
    start = time.perf_counter()
    harmonizer = get_harmonizer(name, **options).fit(train)
    fitted = time.perf_counter()
    errors, scans, apply_seconds = [], [], 0.0
    for subject in subjects:
        begin = time.perf_counter()
        harmonized = harmonizer.apply(subject.a.dwi, subject.a.gtab())
        apply_seconds += time.perf_counter() - begin
        if not np.allclose(harmonized.bvals, subject.b.bvals):
            raise RuntimeError(f"{name} did not return {subject.name}'s site-B protocol")
        errors.append(_errors(harmonized.dwi, subject))
        scans.append(harmonized.dwi)
    result = {"fit_seconds": fitted - start, "apply_seconds": apply_seconds, "errors": errors, "scans": scans}
    return harmonizer, result


def _errors(harmonized: np.ndarray, subject: PairedSubject) -> dict[str, dict[str, float]]:
    b = subject.b
    return harmonization_errors(harmonized, b.dwi, b.bvals, b.bvecs, subject.mask, subject.b_noise_free)


def evaluate_combat(train: list[PairedSubject], subjects: list[PairedSubject]) -> dict[str, Any]:
    """ComBat (:mod:`equidmri.harmonize.combat`) of the DTI FA and MD maps of every shell set of
    :func:`equidmri.harmonize.metrics.shell_groups`: fitted on the A and B maps of the ``train`` subjects,
    features the voxels inside every subject's mask; each test subject's A maps are mapped onto site B and
    scored against its B maps (MSE, MD in mm²/s) as :func:`equidmri.harmonize.metrics.harmonization_errors` does.
    A map-level method: no signal, so no signal MSE, SSIM or downstream fODF. Times and per-subject errors."""
    start = time.perf_counter()
    mask = np.logical_and.reduce([s.mask for s in (*train, *subjects)])

    def maps(subject: PairedSubject) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
        sites = (("A", subject.a), ("B", subject.b))
        return {site: dti_maps_by_shell(d.dwi, d.bvals, d.bvecs, mask) for site, d in sites}

    train_maps = [maps(s) for s in train]
    sites = ["A"] * len(train) + ["B"] * len(train)
    fitted = {
        (key, q): combat.combat_fit(
            np.stack([m[site][key][q] for site in ("A", "B") for m in train_maps]) / (COMBAT_MD_UNIT if q else 1.0),
            sites,
        )
        for key in train_maps[0]["A"]
        for q in (0, 1)  # FA, MD
    }
    fit_seconds = time.perf_counter() - start
    errors = []
    for subject in subjects:
        test = maps(subject)
        errors.append({})
        for key, (fa_b, md_b) in test["B"].items():
            fa, md = (
                fitted[key, q].transfer(test["A"][key][q][None] / unit, "A", "B")[0] * unit
                for q, unit in ((0, 1.0), (1, COMBAT_MD_UNIT))
            )
            errors[-1][key] = {"fa_mse": float(np.mean((fa - fa_b) ** 2)), "md_mse": float(np.mean((md - md_b) ** 2))}
    return {"fit_seconds": fit_seconds, "apply_seconds": time.perf_counter() - start - fit_seconds, "errors": errors}


def evaluate_fitted(harmonizer: HarmonizerMethod, subject: PairedSubject) -> dict[str, dict[str, float]]:
    """Errors of a fitted harmonizer on one subject.

    Raises
    ------
    ValueError
        If the harmonizer cannot take the subject's site-A protocol.
    """
    return _errors(harmonizer.apply(subject.a.dwi, subject.a.gtab()).dwi, subject)


def downstream_angles(scans: list[np.ndarray], subjects: list[PairedSubject]) -> list[float]:
    """Mean angle (degrees) between the first CSD peaks of each harmonized scan and of B, per subject, in the
    subject's white matter (WM fraction >= ``WM_FRACTION``); single-shell CSD on b = ``CSD_SHELL`` s/mm² and
    the b=0 volumes, fixed response ``CSD_RESPONSE_EVALS`` (mm²/s) with the scan's own mean b=0 there."""
    angles = []
    for scan, subject in zip(scans, subjects):
        b = subject.b
        keep = (b.bvals <= B0_THRESHOLD) | np.isclose(b.bvals, CSD_SHELL, atol=SHELL_TOL)
        gtab = make_gtab(b.bvals[keep], b.bvecs[keep])
        wm = (subject.tissue_fractions[..., 0] >= WM_FRACTION) & subject.mask
        peaks = []
        for dwi in (scan, b.dwi):
            s0 = float(mean_b0(dwi, b.bvals)[wm].mean())
            fodf = fit_csd(
                dwi[..., keep].astype(np.float64), gtab, (np.array(CSD_RESPONSE_EVALS), s0), wm, lmax=CSD_LMAX
            )
            peaks.append(find_peaks(fodf, wm)[0])
        angles.append(float(main_peak_agreement(*peaks, wm)["mean_angle_deg"]))
    return angles


def _sd(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(errors: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """shell -> metric -> mean, sd (ddof 1; 0 for one subject) and n over subjects."""
    return {
        shell: {
            metric: {
                "mean": float(np.mean(values)),
                "sd": _sd(values),
                "n": len(values),
            }
            for metric in errors[0][shell]
            for values in [[e[shell][metric] for e in errors]]
        }
        for shell in errors[0]
    }


def _paired(runs: dict[str, dict[str, Any]], shell: str, metric: str, first: str, second: str) -> dict[str, Any]:
    values = [np.array([e[shell][metric] for e in runs[n]["errors"]]) for n in (first, second)]
    return {"shell": shell, "metric": metric, **wilcoxon_test(*values)}


def wilcoxon_tests(runs: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Wilcoxon tests over the test subjects, for each shell and metric: the best method (by mean) against the
    second best (``"best_vs_second"``), and every method against the baseline (``"vs_baseline"``)."""
    names = list(runs)
    tests: dict[str, list[dict[str, Any]]] = {"best_vs_second": [], "vs_baseline": []}
    for shell in runs[names[0]]["summary"]:
        for metric in COLUMNS:
            sign = 1.0 if LOWER_IS_BETTER[metric] else -1.0
            scored = [n for n in names if metric in runs[n]["summary"][shell]]  # ComBat has no signal metrics
            best, second = sorted(scored, key=lambda n: sign * runs[n]["summary"][shell][metric]["mean"])[:2]
            tests["best_vs_second"].append(
                {"best": best, "second": second, **_paired(runs, shell, metric, best, second)}
            )
            for name in scored:
                if name != BASELINE:
                    tests["vs_baseline"].append({"method": name, **_paired(runs, shell, metric, name, BASELINE)})
    return tests


def write_figure(
    path, record: dict[str, Any], harmonizers: dict[str, HarmonizerMethod], subject: PairedSubject
) -> None:
    """One axial slice of B's first ``FIGURE_SHELL`` volume (attenuation) beside each method's harmonized A, with
    the absolute differences."""
    b = subject.b
    volume = int(np.flatnonzero(np.isclose(b.bvals, FIGURE_SHELL))[0])
    z = b.dwi.shape[2] // 2
    inside = subject.mask[..., z]

    def slice_of(dwi: np.ndarray) -> np.ndarray:
        return np.where(inside, attenuation(dwi, b.bvals)[..., z, volume], np.nan)

    maps = {
        "A resampled (baseline)" if name == BASELINE else f"A, {name}": slice_of(
            h.apply(subject.a.dwi, subject.a.gtab()).dwi
        )
        for name, h in harmonizers.items()
    }
    plot_maps_with_errors(
        path,
        slice_of(b.dwi),
        maps,
        footer(record),
        f"{subject.name}, slice z={z}, b={FIGURE_SHELL:g} s/mm² volume {volume} of B's protocol",
        reference_label="B as acquired",
        quantity="attenuation S/S0",
        error_max=FIGURE_ERROR_MAX,
    )


def run(args: argparse.Namespace) -> int:
    """Build the cohort, fit and score every harmonizer, write the JSON record and the markdown page."""
    sizes = {
        key: (QUICK if args.quick else DEFAULTS)[key] if getattr(args, key) is None else getattr(args, key)
        for key in DEFAULTS
    }
    if sizes["subjects"] < 5 or sizes["size"] < 8 or sizes["steps"] < 1:
        raise ValueError(f"--subjects must be >= 5, --size >= 8 voxels and --steps >= 1, got {sizes}")
    combat.require()
    figure, record = start_figure_report(args, sizes)
    start = time.perf_counter()
    cohort = paired_cohort(sizes["subjects"], seed=args.seed, size=sizes["size"])
    splits = split_cohort(cohort)
    real = real_pair(SCANNER_B, seed=args.seed)
    generated = time.perf_counter() - start
    record["settings"] = {
        **sizes,
        "seed": args.seed,
        "scanner_a": SCANNER_A.describe(),
        "scanner_b": SCANNER_B.describe(),
        "splits": {name: [s.name for s in subjects] for name, subjects in splits.items()},
        "real_subject": REAL_VOLUME,
        "generation_seconds": generated,
    }
    runs, harmonizers = {}, {}
    for row, name, options in bench_rows(sizes["steps"]):
        logger.info("fitting %s on %d subjects", row, len(splits["train"]))
        harmonizers[row], result = evaluate(name, options, splits["train"], splits["test"])
        test_errors = result["errors"]
        try:  # one shell of 64 directions: a network trained on three shells of 30 cannot take it
            real_errors = evaluate_fitted(harmonizers[row], real)
        except ValueError as error:
            logger.info("%s does not apply to %s: %s", row, real.name, error)
            real_errors = None
        entry = find_harmonizer(name)
        runs[row] = {
            "name": name,
            "options": options,
            "summary": summarise(test_errors),
            "errors": test_errors,
            "real": real_errors,
            "fit_seconds": result["fit_seconds"],
            "apply_seconds": result["apply_seconds"],
            "source": entry.source,
            "summary_line": entry.summary,
        }
        if entry.learned:
            runs[row]["final_loss"] = harmonizers[row].losses[-1]
            runs[row]["paired_subjects"] = len(harmonizers[row].paired_indices)
        angles = downstream_angles(result["scans"], splits["test"])
        runs[row]["downstream"] = {"angle_deg": angles, "mean": float(np.mean(angles)), "sd": _sd(angles)}
    logger.info("fitting %s on %d subjects", COMBAT_ROW, len(splits["train"]))
    result = evaluate_combat(splits["train"], splits["test"])
    runs[COMBAT_ROW] = {
        "name": "ComBat",
        "options": {},
        "summary": summarise(result["errors"]),
        "errors": result["errors"],
        "real": None,
        "fit_seconds": result["fit_seconds"],
        "apply_seconds": result["apply_seconds"],
        "source": combat.SOURCE,
        "summary_line": combat.SUMMARY,
        "downstream": None,
    }
    record["methods"] = runs
    record["tests"] = wilcoxon_tests(runs)
    record["tests"]["downstream_vs_baseline"] = {
        row: wilcoxon_test(
            np.array(run_["downstream"]["angle_deg"]), np.array(runs[BASELINE]["downstream"]["angle_deg"])
        )
        for row, run_ in runs.items()
        if row != BASELINE and run_["downstream"] is not None
    }
    record["seconds"] = time.perf_counter() - start
    figure_rows = {row: h for row, h in harmonizers.items() if row in FIGURE_ROWS}
    write_figure(figure, record, figure_rows, splits["test"][0])
    write_report(args, record, render_markdown(record, figure.name))
    return 0


def _cell(stats: dict[str, float] | None, metric: str) -> str:
    if stats is None:
        return "–"
    factor, _ = COLUMNS[metric]
    spec = ".3f" if metric == "ssim" else ".3g"
    return f"{fmt(stats['mean'] / factor, spec)} ± {fmt(stats['sd'] / factor, spec)}"


def _rows(record: dict[str, Any], shell: str) -> list[str]:
    heading = "| method | " + " | ".join(label for _, label in COLUMNS.values()) + " |"
    lines = [heading, "|---" * (len(COLUMNS) + 1) + "|"]
    for name, result in record["methods"].items():
        stats = result["summary"][shell]
        lines.append(f"| {name} | " + " | ".join(_cell(stats.get(m), m) for m in COLUMNS) + " |")
    return lines


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.2g}"


def _test_rows(record: dict[str, Any], shell: str) -> list[str]:
    """One row per metric: best, second best and their p; each method's p against the baseline."""
    others = [name for name in record["methods"] if name != BASELINE]
    lines = [
        "| metric | best | second | p | " + " | ".join(f"{name} vs {BASELINE}: p" for name in others) + " |",
        "|---" * (4 + len(others)) + "|",
    ]
    against = {(t["method"], t["metric"]): t for t in record["tests"]["vs_baseline"] if t["shell"] == shell}
    for test in (t for t in record["tests"]["best_vs_second"] if t["shell"] == shell):
        metric = test["metric"]
        cells = [COLUMNS[metric][1].split(" (")[0], test["best"], test["second"], _p(test["p"])]
        cells += [_p(against[name, metric]["p"]) if (name, metric) in against else "–" for name in others]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(record: dict[str, Any], figure: str) -> str:
    """The page: provenance, the cohort, Table 1 and Table 2 analogues with p-values, the real subject and the
    figure (file name ``figure``, beside the page)."""
    settings = record["settings"]
    splits = {name: len(subjects) for name, subjects in settings["splits"].items()}
    a, b = settings["scanner_a"], settings["scanner_b"]
    lines = header_lines("Cross-scanner harmonization on a simulated two-scanner cohort (issue 20)", record)
    lines += [
        f"{COMBAT_ROW} harmonizes DTI FA and MD maps, not the signal: its signal, SSIM and downstream cells are "
        "– (docs/harmonization.md). Every learned method is "
        f"trained for {settings['steps']} Adam steps on blocks of the training subjects (the val subjects are "
        "unused); the cyclic network once per training mode, its paired subjects the nested subsets of "
        "`paired_subset` (seed 0).",
        "",
        f"Cohort: {settings['subjects']} phantom subjects of {settings['size']}³ voxels (seeds {settings['seed']}…), "
        f"split {splits['train']} train / {splits['val']} val / {splits['test']} test; generated in "
        f"{settings['generation_seconds']:.1f} s. Scanner A: {a['directions']} "
        f"directions per shell, SNR {a['snr']:g}, coil gain {a['coil_gain']:g}, bias {a['bias_amplitude']:g}. "
        f"Scanner B (reference): {b['directions']} directions, shell gains {b['shell_gain']}, b scale "
        f"{b['b_scale']}, SNR {b['snr']:g}, coil gain {b['coil_gain']:g}, bias {b['bias_amplitude']:g}, blur σ "
        f"{b['blur_sigma']:g} voxels. Shells {', '.join(f'{x:g}' for x in b['shells'])} s/mm². Every effect: "
        "docs/harmonization.md.",
        "",
        "Errors of harmonized A against B as acquired (noisy), inside the phantom mask: MSE of the attenuation "
        "S/S0, of DTI FA and MD (dipy WLS), and SSIM per DW volume (scikit-image, a stand-in for the paper's "
        "LPIPS, whose pretrained weights cannot be downloaded); mean ± sd over the test subjects. The last "
        "column is the signal MSE against B without its noise (known in the simulation). Two-sided Wilcoxon "
        "signed-rank tests over the test subjects compare the best method of each column with the second best, "
        "and each method with the baseline.",
        "",
        "## Table 1 analogue: all shells",
        "",
        *_rows(record, "all"),
        "",
        *_test_rows(record, "all"),
        "",
        "## Table 2 analogue: per shell",
        "",
        "FA and MD of one shell are fitted to the b=0 volume and that shell.",
    ]
    for shell in (s for s in record["methods"][next(iter(record["methods"]))]["summary"] if s != "all"):
        lines += ["", f"### {shell} s/mm²", "", *_rows(record, shell), "", *_test_rows(record, shell)]
    lines += [
        "",
        f"## Real anatomy: {settings['real_subject']} through scanner B",
        "",
        f"dipy's {settings['real_subject']} (b = 1000 s/mm², 64 directions) is site A as acquired; site B is its "
        "per-shell SH fit at B's b = 1000 directions with B's effects and noise. One subject: no test. RISH uses "
        "its global scales on this 10³ grid. B's blur, which voxel-wise methods cannot undo, is most of the "
        "difference here (docs/harmonization.md).",
        "",
        "| method | " + " | ".join(label for _, label in COLUMNS.values()) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, result in record["methods"].items():
        values = (result["real"] or {}).get("all")
        if name == COMBAT_ROW:
            lines.append(f"| {name} | – (one subject on another grid: nothing to fit ComBat's voxels on) |")
            continue
        cells = [
            "– (one shell: the network needs the three it was trained on)"
            if values is None
            else fmt(values[m] / COLUMNS[m][0], ".3f" if m == "ssim" else ".3g")
            for m in COLUMNS
        ]
        lines.append(f"| {name} | " + " | ".join(cells[:1] if values is None else cells) + " |")
    lines += [
        "",
        "## Downstream: fODF peaks",
        "",
        f"dipy CSD (b = {CSD_SHELL:g} s/mm² and b=0, lmax {CSD_LMAX}, fixed response "
        f"{tuple(e * 1e3 for e in CSD_RESPONSE_EVALS)} µm²/ms) of harmonized A and of B as acquired; mean angle "
        f"between their first peaks over the white-matter voxels (WM fraction >= {WM_FRACTION:g}) of each test "
        "subject; mean ± sd over subjects, Wilcoxon test against the baseline.",
        "",
        "| method | angle to B's peaks (°) | p vs baseline |",
        "|---|---|---|",
    ]
    downstream_tests = record["tests"]["downstream_vs_baseline"]
    for name, result in record["methods"].items():
        down = result["downstream"]
        if down is None:
            lines.append(f"| {name} | – (harmonizes maps, not the signal) | – |")
            continue
        p = _p(downstream_tests[name]["p"]) if name in downstream_tests else "–"
        lines.append(f"| {name} | {down['mean']:.2f} ± {down['sd']:.2f} | {p} |")
    lines += [
        "",
        "## Figure",
        "",
        f"![One slice of B and of harmonized A, with absolute differences]({figure})",
        "",
        "## Methods",
        "",
    ]
    for name, result in record["methods"].items():
        lines.append(
            f"- **{name}**: {result['summary_line']} ({result['source']}); fit {result['fit_seconds']:.2f} s, "
            f"applied to {plural(splits['test'] + (result['real'] is not None), 'subject')} in "
            f"{result['apply_seconds']:.2f} s"
            + (
                f"; {result['paired_subjects']} paired training subjects, final loss {result['final_loss']:.3g}."
                if "final_loss" in result
                else "."
            )
        )
    lines += ["", f"Total {record['seconds']:.1f} s."]
    return "\n".join(lines)
