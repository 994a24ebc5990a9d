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
from equidmri.harmonize import HARMONIZERS, get_harmonizer, harmonization_errors, split_cohort, wilcoxon_test
from equidmri.harmonize.metrics import LOWER_IS_BETTER, NOISE_FREE_METRIC
from equidmri.harmonize.registry import HarmonizerMethod
from equidmri.harmonize.shells import attenuation
from equidmri.harmonize.subjects import PairedSubject
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


def evaluate(
    name: str, train: list[PairedSubject], subjects: list[PairedSubject]
) -> tuple[HarmonizerMethod, dict[str, Any]]:
    """Fit harmonizer ``name`` on ``train`` and score it on each subject: the harmonizer, times and per-subject
    errors (against B's noise-free signal too)."""
    start = time.perf_counter()
    harmonizer = get_harmonizer(name).fit(train)
    fitted = time.perf_counter()
    errors, apply_seconds = [], 0.0
    for subject in subjects:
        begin = time.perf_counter()
        harmonized = harmonizer.apply(subject.a.dwi, subject.a.gtab())
        apply_seconds += time.perf_counter() - begin
        if not np.allclose(harmonized.bvals, subject.b.bvals):
            raise RuntimeError(f"{name} did not return {subject.name}'s site-B protocol")
        b = subject.b
        errors.append(harmonization_errors(harmonized.dwi, b.dwi, b.bvals, b.bvecs, subject.mask, subject.b_noise_free))
    return harmonizer, {"fit_seconds": fitted - start, "apply_seconds": apply_seconds, "errors": errors}


def summarise(errors: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """shell -> metric -> mean, sd (ddof 1; 0 for one subject) and n over subjects."""
    return {
        shell: {
            metric: {
                "mean": float(np.mean(values)),
                "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
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
            best, second = sorted(names, key=lambda n: sign * runs[n]["summary"][shell][metric]["mean"])[:2]
            tests["best_vs_second"].append(
                {"best": best, "second": second, **_paired(runs, shell, metric, best, second)}
            )
            for name in names:
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
    if sizes["subjects"] < 5 or sizes["size"] < 8:
        raise ValueError(f"--subjects must be >= 5 and --size >= 8 voxels, got {sizes}")
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
    for harmonizer in HARMONIZERS:
        logger.info("fitting %s on %d subjects", harmonizer.name, len(splits["train"]))
        harmonizers[harmonizer.name], result = evaluate(harmonizer.name, splits["train"], splits["test"] + [real])
        *test_errors, real_errors = result["errors"]
        runs[harmonizer.name] = {
            "summary": summarise(test_errors),
            "errors": test_errors,
            "real": real_errors,
            "fit_seconds": result["fit_seconds"],
            "apply_seconds": result["apply_seconds"],
            "source": harmonizer.source,
            "summary_line": harmonizer.summary,
        }
    record["methods"] = runs
    record["tests"] = wilcoxon_tests(runs)
    record["seconds"] = time.perf_counter() - start
    write_figure(figure, record, harmonizers, splits["test"][0])
    write_report(args, record, render_markdown(record, figure.name))
    return 0


def _cell(stats: dict[str, float], metric: str) -> str:
    factor, _ = COLUMNS[metric]
    spec = ".3f" if metric == "ssim" else ".3g"
    return f"{fmt(stats['mean'] / factor, spec)} ± {fmt(stats['sd'] / factor, spec)}"


def _rows(record: dict[str, Any], shell: str) -> list[str]:
    heading = "| method | " + " | ".join(label for _, label in COLUMNS.values()) + " |"
    lines = [heading, "|---" * (len(COLUMNS) + 1) + "|"]
    for name, result in record["methods"].items():
        stats = result["summary"][shell]
        lines.append(f"| {name} | " + " | ".join(_cell(stats[m], m) for m in COLUMNS) + " |")
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
        cells += [_p(against[name, metric]["p"]) for name in others]
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
        "**Only the baseline and RISH exist so far.** The SH-ResNet, the cyclic network (unsupervised, "
        "semi-supervised, supervised), ComBat and the downstream fODF comparison of issue 20 are not implemented "
        "yet, so the paper's claims about them cannot be checked here.",
        "",
        f"Cohort: {settings['subjects']} phantom subjects of {settings['size']}³ voxels (seeds {settings['seed']}…), "
        f"split {splits['train']} train / {splits['val']} val / {splits['test']} test (val is unused by these "
        f"closed-form methods); generated in {settings['generation_seconds']:.1f} s. Scanner A: {a['directions']} "
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
        values = result["real"]["all"]
        lines.append(
            f"| {name} | "
            + " | ".join(fmt(values[m] / COLUMNS[m][0], ".3f" if m == "ssim" else ".3g") for m in COLUMNS)
            + " |"
        )
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
            f"applied to {plural(splits['test'] + 1, 'subject')} in {result['apply_seconds']:.2f} s."
        )
    lines += ["", f"Total {record['seconds']:.1f} s."]
    return "\n".join(lines)
