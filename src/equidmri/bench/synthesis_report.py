"""The page and the figure of ``equidmri bench synthesis`` (see :mod:`equidmri.bench.synthesis`).

Every number on the page is read from the run record; the comparisons with the paper are computed, not written by
hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from equidmri.bench.report import fmt, header_lines, plural
from equidmri.synth.defaults import MODES
from equidmri.viz.results import BarPanel, plot_bar_panels

ALPHA = 0.05  # significance level of the paired tests
PAPER = (  # Sadegheih, Weninger & Merhof 2023, as quoted in issue 21
    "Syn, Sample & Mean and Sample alike (signal MAE 0.014 on local data, 0.037 on HCP; FA MAE 0.0075 / 0.0104); "
    "RandomWM far worse (FA MAE 0.17 / 0.22; direction error 42°)"
)
METRIC_LABELS = {"signal": "signal MAE", "fa": "FA MAE", "direction": "direction error (°)"}


def _pm(row: dict[str, Any], key: str, spec: str) -> str:
    return f"{fmt(row[key], spec)} ± {fmt(row[f'{key}_sd'], spec)}"


def _rows(record: dict[str, Any], reference: str, region: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (r["subject"], r["mode"]): r for r in record["summary"] if r["reference"] == reference and r["region"] == region
    }


def _subjects(record: dict[str, Any]) -> list[str]:
    return [s["name"] for s in record["subjects"]]


def write_figure(path: Path, record: dict[str, Any]) -> None:
    """Four panels, WM, mean ± sd over the seeds, one bar per mode and subject: the autoencoder's signal MAE, FA MAE
    and direction error against the measured signal, and the FA estimator's MAE."""
    subjects, rows = _subjects(record), _rows(record, "measured", "wm")
    fa_rows = {(r["subject"], r["method"]): r for r in record["fa_estimator_summary"]}

    def panel(title: str, table: dict, key: str) -> BarPanel:
        means = [[table[s, m][key] if (s, m) in table else np.nan for s in subjects] for m in MODES]
        stds = [[table[s, m][f"{key}_sd"] if (s, m) in table else np.nan for s in subjects] for m in MODES]
        return BarPanel(title, np.array(means, dtype=float), np.array(stds, dtype=float))

    panels = [
        panel("autoencoder: signal MAE", rows, "signal_mae"),
        panel("autoencoder: FA MAE", rows, "fa_mae"),
        panel("autoencoder: direction error (°, mean)", rows, "direction_error_deg_mean"),
        panel("FA estimator: FA MAE", fa_rows, "fa_mae_wm"),
    ]
    wm = record["settings"]["wm_fa"]
    plot_bar_panels(
        path, panels, list(MODES), subjects, ylabel=f"error in WM (FA > {wm}), mean ± sd over seeds",
        panel_size=(4.2, 3.6), sharey=False,
    )  # fmt: skip


def _settings(record: dict[str, Any]) -> list[str]:
    s = record["settings"]
    ph = s["phantom"]
    shells = ", ".join(f"{b:.0f}" for b in ph["shells"])
    return [
        f"Sizes: {s['n_train']} synthetic training voxels per mode and seed, autoencoder {s['epochs']} epochs (Adam, "
        f"batch {s['batch_size']}, learning rate {s['lr']}), {plural(s['seeds'], 'seed')} from {s['seed']}, "
        f"FA estimator (MLP, hidden {s['fa_hidden']}) {s['fa_epochs']} epochs, {s['held_out']} held-out synthetic "
        f"voxels per mode and seed; phantoms {s['phantom_size']}³, b=0 ×{ph['b0']} + {ph['directions_per_shell']} "
        f"directions at b = {shells} s/mm², SNR {ph['snr']:.0f}. Real volumes: {', '.join(s['real'])}. Run time "
        f"{record['elapsed_s']:.0f} s wall, {record['cpu_s']:.0f} s CPU (this process, imports excluded).",
        "",
        f"White matter (WM): voxels whose measured signal's own WLS tensor fit has FA > {s['wm_fa']} (the phantom "
        'against its truth: the noise-free signal\'s FA); "all": every evaluation voxel. Statistics: '
        f"{s['statistics']}. Paper: {PAPER}.",
        "",
    ]


def _subject_table(record: dict[str, Any]) -> list[str]:
    rw = record["settings"]["random_wm"]
    lines = [
        "## Subjects and their calibration",
        "",
        "| subject | evaluation voxels | volumes | WM voxels (FA > "
        f"{record['settings']['wm_fa']}) | SNR (method) | WM / GM / CSF calibration voxels | calibrated WM λ∥ p5–p95 "
        "(10⁻³ mm²/s, per shell) | calibrated WM λ⊥ p5–p95 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in record["subjects"]:
        par = ", ".join(
            f"{sh['wm_lambda_par']['p5'] * 1e3:.2f}–{sh['wm_lambda_par']['p95'] * 1e3:.2f}" for sh in s["shells"]
        )
        perp = ", ".join(
            f"{sh['wm_lambda_perp']['p5'] * 1e3:.2f}–{sh['wm_lambda_perp']['p95'] * 1e3:.2f}" for sh in s["shells"]
        )
        v = s["calibration_voxels"]
        lines.append(
            f"| {s['name']} | {s['description']} | {s['volumes']} | {s['voxels']['measured_wm']} | "
            f"{s['snr']:.1f} ({s['snr_method']}) | {v['wm']} / {v['gm']} / {v['csf']} | {par} | {perp} |"
        )
    lines += [
        "",
        f"`random-wm` draws λ∥ ~ U({rw['lambda_par'][0] * 1e3:.1f}, {rw['lambda_par'][1] * 1e3:.1f})·10⁻³ mm²/s and "
        f"λ⊥ = λ∥ · U({rw['perp_ratio'][0]:g}, {rw['perp_ratio'][1]:g}), the same on every shell.",
        "",
    ]
    return lines


def _error_table(record: dict[str, Any], reference: str, region: str) -> list[str]:
    rows = _rows(record, reference, region)
    lines = [
        "| subject | mode | voxels | signal MAE | FA MAE | direction error mean (°) | median (°) | final training MSE "
        "| training CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    n = {(r["subject"], r["mode"]): r["n"] for r in record["records"] if r["reference"] == reference
         and r["region"] == region}  # fmt: skip
    for (subject, mode), row in rows.items():
        cells = [
            _pm(row, "signal_mae", ".4f"),
            _pm(row, "fa_mae", ".4f"),
            _pm(row, "direction_error_deg_mean", ".1f"),
            _pm(row, "direction_error_deg_median", ".1f"),
            fmt(row["train_final_mse"], ".5f"),
            fmt(row["train_cpu_s"], ".1f"),
        ]
        lines.append(f"| {subject} | {mode} | {n[subject, mode]} | " + " | ".join(cells) + " |")
    return lines + [""]


def control_verdicts(record: dict[str, Any], reference: str = "measured") -> list[dict[str, Any]]:
    """Per subject and region: random-wm's FA MAE and direction error over the mean of the other modes', and whether
    random-wm is significantly worse (p < ALPHA, positive median difference) than every other mode on each."""
    tests = {
        (t["subject"], t["region"], t["a"], t["metric"]): t
        for t in record["tests"]
        if t["reference"] == reference and t["b"] == "random-wm"
    }
    verdicts = []
    for subject in _subjects(record):
        for region in ("wm", "all"):
            rows = _rows(record, reference, region)
            if (subject, "random-wm") not in rows:
                continue
            verdict = {"subject": subject, "region": region}
            for metric, key in (("fa", "fa_mae"), ("direction", "direction_error_deg_mean")):
                modes = [m for m in MODES if m != "random-wm"]
                others = [rows[subject, m][key] for m in modes if rows[subject, m][key] is not None]
                control = rows[subject, "random-wm"][key]
                verdict[f"{metric}_ratio"] = control / np.mean(others) if others and control is not None else None
                worse = []
                for mode in modes:
                    t = tests.get((subject, region, mode, metric))
                    worse.append(
                        t is not None and t["p"] is not None and t["p"] < ALPHA and t["median_difference"] < 0
                    )  # a minus random-wm < 0: random-wm has the larger errors
                verdict[f"{metric}_control_worse_than_all"] = all(worse)
            verdicts.append(verdict)
    return verdicts


def _control_table(record: dict[str, Any]) -> list[str]:
    lines = [
        "| subject | region | random-wm FA MAE / mean of the others | significantly worse than all three (FA) | "
        "random-wm direction error / mean of the others | significantly worse than all three (direction) |",
        "|---|---|---|---|---|---|",
    ]
    for v in control_verdicts(record):
        lines.append(
            f"| {v['subject']} | {v['region']} | {fmt(v['fa_ratio'], '.2f')} | "
            f"{'yes' if v['fa_control_worse_than_all'] else 'no'} | {fmt(v['direction_ratio'], '.2f')} | "
            f"{'yes' if v['direction_control_worse_than_all'] else 'no'} |"
        )
    return lines + [""]


def _tests_table(record: dict[str, Any], reference: str, region: str) -> list[str]:
    cells: dict[tuple[str, str, str], dict[str, str]] = {}
    for t in record["tests"]:
        if t["reference"] == reference and t["region"] == region:
            cell = (
                f"{fmt(t['median_difference'], '.4f' if t['metric'] != 'direction' else '.2f')} ({fmt(t['p'], '.2g')})"
            )
            cells.setdefault((t["subject"], t["a"], t["b"]), {})[t["metric"]] = cell
    lines = [
        "| subject | a | b | voxels | signal: median(a − b) (p) | FA: median(a − b) (p) "
        "| direction (°): median(a − b) (p) |",
        "|---|---|---|---|---|---|---|",
    ]
    n = {(t["subject"], t["a"], t["b"]): t["n"] for t in record["tests"] if t["reference"] == reference
         and t["region"] == region}  # fmt: skip
    for (subject, a, b), row in cells.items():
        lines.append(
            f"| {subject} | {a} | {b} | {n[subject, a, b]} | {row['signal']} | {row['fa']} | {row['direction']} |"
        )
    return lines + [""]


def _cross_tables(record: dict[str, Any]) -> list[str]:
    rows = {(r["subject"], r["train_mode"], r["test_mode"]): r for r in record["cross_summary"]}
    lines = [
        "Each mode's autoencoder on held-out synthetic voxels of every mode, against their noise-free signal: FA MAE "
        "(signal MAE over the noise's own MAE, |noisy − clean|, in brackets: below 1 the autoencoder denoises). Rows: "
        "the training mode; columns: the mode of the held-out voxels; mean over the seeds.",
        "",
        "| subject | trained on | " + " | ".join(f"tested on {m}" for m in MODES) + " |",
        "|---|---|" + "---|" * len(MODES),
    ]
    for subject in _subjects(record):
        for a in MODES:
            values = []
            for b in MODES:
                r = rows.get((subject, a, b))
                values.append(
                    "–" if r is None else f"{r['fa_mae_clean']:.4f} ({r['signal_mae_clean'] / r['noise_mae']:.2f})"
                )
            lines.append(f"| {subject} | {a} | " + " | ".join(values) + " |")
    return lines + [""]


def _fa_table(record: dict[str, Any]) -> list[str]:
    lines = [
        "| subject | trained on | FA MAE in WM | FA MAE, all voxels | training CPU s |",
        "|---|---|---|---|---|",
    ]
    for r in record["fa_estimator_summary"]:
        lines.append(
            f"| {r['subject']} | {r['method']} | {_pm(r, 'fa_mae_wm', '.4f')} | {_pm(r, 'fa_mae_all', '.4f')} | "
            f"{fmt(r['train_cpu_s'], '.1f')} |"
        )
    return lines + [""]


def _noise_line(record: dict[str, Any]) -> list[str]:
    lines = []
    for s in record["subjects"]:
        noise = s.get("noise_vs_truth")
        if noise:
            for region, row in noise.items():
                lines.append(
                    f"- {s['name']}, {region} ({row['n']} voxels): the noisy measured signal itself scores signal MAE "
                    f"{fmt(row['signal_mae'], '.4f')}, FA MAE {fmt(row['fa_mae'], '.4f')}, direction error "
                    f"{fmt(row['direction_error_deg_mean'], '.1f')}° (mean) against the truth."
                )
    return lines + [""] if lines else []


def render_markdown(record: dict[str, Any], figure_name: str) -> str:
    """The results page: settings, subjects, the autoencoder's errors, the control, tests, diagnostics, FA use."""
    lines = header_lines("Synthesis modes judged by a self-adaptive autoencoder (issue 21 §2)", record)
    lines += _settings(record)
    lines += _subject_table(record)
    lines += [
        "## The autoencoder on the subjects' voxels, against the measured signal",
        "",
        "Mean ± sd over the seeds. The measured signal is noisy, so these errors include the noise that the "
        "autoencoder removes (the phantom section scores against the truth).",
        "",
        "**White matter**",
        "",
        *_error_table(record, "measured", "wm"),
        "**All voxels**",
        "",
        *_error_table(record, "measured", "all"),
        "## Is `random-wm` the control that fails?",
        "",
        f"Computed from the tables above and the paired tests below (p < {ALPHA}).",
        "",
        *_control_table(record),
        "## Paired tests across modes (white matter, against the measured signal)",
        "",
        "Wilcoxon signed-rank, two-sided, over voxels, of each voxel's error averaged over the seeds; a negative "
        "median(a − b) means mode a has the smaller errors. All regions and references are in the JSON record.",
        "",
        *_tests_table(record, "measured", "wm"),
    ]
    if any(r["reference"] == "truth" for r in record["summary"]):
        lines += [
            "## The held-out phantom against its noise-free truth",
            "",
            *_noise_line(record),
            "**White matter (FA of the noise-free signal)**",
            "",
            *_error_table(record, "truth", "wm"),
            "**All voxels**",
            "",
            *_error_table(record, "truth", "all"),
            "Paired tests, white matter, against the truth:",
            "",
            *_tests_table(record, "truth", "wm"),
        ]
    lines += [
        "## Diagnostic: held-out synthetic voxels",
        "",
        *_cross_tables(record),
        "## Practical use: an FA estimator trained on each mode's synthetic voxels",
        "",
        "Target in training: the FA of dipy's WLS tensor fit to the synthetic voxel's noise-free signal. Scored on the "
        "subjects' voxels against dipy's FA of the measured signal (the phantom: of its noise-free signal, with dipy's "
        "FA of the noisy signal as a reference row); WM by that reference FA.",
        "",
        *_fa_table(record),
        f"![errors per mode and subject]({figure_name})",
        "",
    ]
    return "\n".join(lines)
