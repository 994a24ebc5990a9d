"""``equidmri bench table``: the SHD paper's Table 1 on our phantoms, every method of
:data:`equidmri.methods.METHODS`.

How the methods are scored, and the options: :mod:`equidmri.bench.options.table` (the ``--help`` of the
command); how each method runs on the phantoms: :mod:`equidmri.bench.methods`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from equidmri.bench.methods import Settings, VolumeSet, result_settings, run_on_phantoms
from equidmri.bench.options.table import QUICK, QUICK_SIZE, RUNS_DIR
from equidmri.bench.report import check_report_outputs, header_lines, start_record, write_report
from equidmri.bench.run_store import RunStore
from equidmri.eval.metrics import at_threshold, score_thresholds
from equidmri.eval.peak_files import load_ground_truth
from equidmri.methods import METHODS, Method
from equidmri.sims.dataset import crop_phantom_set
from equidmri.viz.results import ScatterPoint, plot_error_scatter

logger = logging.getLogger(__name__)

RESOLUTIONS = ("high", "low")
COLUMNS = (
    ("pr_auc", "PR-AUC", ".3f"),
    ("f1", "F1", ".3f"),
    ("angle_deg", "Angle (°)", ".1f"),
    ("fnr", "FNR", ".3f"),
    ("fpr", "FPR", ".3f"),
)  # the paper's Table 1 columns
CONFIDENCE = 0.95
ZOOM_FACTOR = 1.6  # the figure's zoomed row shows the methods within this factor of the best mean angular error
# issue #3's targets: SHD-TV against CSD lmax 8 (the SHD paper's margins on DiSCo: 30% and 0.13 at low resolution)
MIN_ANGLE_REDUCTION, MIN_F1_GAIN = 0.30, 0.10


def score_run(ground_truth: dict[str, tuple[np.ndarray, np.ndarray]], peaks: dict[str, tuple]) -> dict[str, Any]:
    """Threshold chosen on ``val`` (best F1), scores of ``test`` at it (PR-AUC of ``test``); when ``peaks``
    has the training volume, also its F1 at that threshold (``f1_train``: seen against unseen geometry)."""
    scores = {}
    for volume in peaks:
        gt_dirs, mask = ground_truth[volume]
        dirs, values = peaks[volume]
        scores[volume] = score_thresholds(gt_dirs[mask], dirs[mask], values[mask])
    threshold = scores["val"]["best"]["threshold"]
    result = at_threshold(scores["test"], threshold)
    if "train" in scores:
        result["f1_train"] = at_threshold(scores["train"], threshold)["f1"]
    return result


def summarise(values: list[float]) -> dict[str, float | None]:
    """Mean and half-width of the 95% Student-t confidence interval (None for one value)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"mean": None, "ci95": None}
    mean = float(np.mean(values))
    if len(values) < 2:
        return {"mean": mean, "ci95": None}
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
    return {"mean": mean, "ci95": float(half)}


def planned_runs(method: Method, seeds: list[int]) -> list[tuple[str, int | None]]:
    """``(resolution, seed)`` of every run of ``method`` (seed None for an iterative method)."""
    return [(res, seed) for res in method.resolutions for seed in (seeds if method.learned else [None])]


def run_method(
    method: Method, volumes: VolumeSet, ground_truth: dict, seeds: list[int], settings: Settings, store: RunStore
) -> dict[str, Any]:
    """All resolutions and seeds of one method: per-run scores (read from ``store`` when it holds them,
    else made and stored with the settings the method depends on) and their summaries."""
    tag = result_settings(method, settings)
    runs: dict[str, list[dict[str, Any]]] = {resolution: [] for resolution in method.resolutions}
    for resolution, seed in planned_runs(method, seeds):
        stored = store.get(method.name, resolution, seed, tag)
        if stored is not None:
            logger.info("%s, %s resolution, seed %s: stored run of %s", method.name, resolution, seed, stored["date"])
            runs[resolution].append(stored)
            continue
        logger.info("%s, %s resolution, seed %s", method.name, resolution, seed)
        run = run_on_phantoms(method, volumes, resolution, 0 if seed is None else seed, settings)
        runs[resolution].append(
            store.put(
                method.name,
                resolution,
                seed,
                tag,
                {
                    "seed": seed,
                    "train_s": run.train_s,
                    "infer_s": run.infer_s,
                    "threads": settings.threads,
                    **score_run(ground_truth, run.peaks),
                },
            )
        )
    record: dict[str, Any] = {"method": method.name, "learned": method.learned, "resolutions": {}}
    for resolution, done in runs.items():
        summary = {key: summarise([r[key] for r in done]) for key, _, _ in COLUMNS}
        summary.update(
            {key: summarise([r.get(key) for r in done]) for key in ("train_s", "infer_s", "threshold", "f1_train")}
        )
        record["resolutions"][resolution] = {"runs": done, "summary": summary}
    return record


def _cell(summary: dict[str, float | None], spec: str) -> str:
    if summary["mean"] is None:
        return "–"
    ci = f" ± {format(summary['ci95'], spec)}" if summary["ci95"] is not None else ""
    return format(summary["mean"], spec) + ci


def _provenance(result: dict[str, Any]) -> str:
    """Where the runs come from: their count, commits, dates and threads (``--resume`` gathers sittings)."""
    runs = [run for record in result["methods"] for res in record["resolutions"].values() for run in res["runs"]]
    if not runs:
        return "No run."
    dates = sorted(run["date"] for run in runs)
    commits = ", ".join(f"`{c}`" for c in sorted({str(run["commit"]) for run in runs}))
    threads = ", ".join(str(t) for t in sorted({run["threads"] for run in runs}))
    return (
        f"Runs: {len(runs)}, made from {dates[0]} to {dates[-1]} at commit(s) {commits} with {threads} "
        "torch thread(s) each (every run's own record is in `table.json` and `table_runs/`)."
    )


def _table(result: dict[str, Any], columns: tuple[tuple[str, str, str], ...]) -> list[str]:
    """A markdown table: one row per method, ``(key, label, format)`` columns at each resolution."""
    lines = [
        "| Method | " + " | ".join(f"{label} {res}" for res in RESOLUTIONS for _, label, _ in columns) + " |",
        "|---|" + "---:|" * (len(RESOLUTIONS) * len(columns)),
    ]
    for record in result["methods"]:
        cells = []
        for res in RESOLUTIONS:
            summary = record["resolutions"].get(res, {}).get("summary")
            cells += [_cell(summary[key], spec) if summary else "–" for key, _, spec in columns]
        lines.append(f"| {record['method']} | " + " | ".join(cells) + " |")
    return lines


def _mean(result: dict[str, Any], method: str, resolution: str, key: str) -> tuple[float, float | None] | None:
    """``(mean, ci95)`` of ``key`` for ``method`` at ``resolution``, or None when the table lacks it."""
    for record in result["methods"]:
        summary = record["resolutions"].get(resolution, {}).get("summary") if record["method"] == method else None
        if summary and summary[key]["mean"] is not None:
            return summary[key]["mean"], summary[key]["ci95"]
    return None


def _f1_and_angle(result: dict[str, Any], method: str, resolution: str) -> list[tuple[float, float | None]] | None:
    """``[(F1 mean, ci95), (angle mean, ci95)]`` of ``method`` at ``resolution``; None when either is missing."""
    f1, angle = _mean(result, method, resolution, "f1"), _mean(result, method, resolution, "angle_deg")
    return None if f1 is None or angle is None else [f1, angle]


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def target_lines(result: dict[str, Any]) -> list[str]:
    """Issue #3's targets read off the table, one bullet each (none for a table without the methods they name).

    SHD-TV against CSD (lmax 8): at low resolution an angular error at least ``MIN_ANGLE_REDUCTION`` lower and
    an F1 at least ``MIN_F1_GAIN`` higher, at high resolution a lower angular error and a higher F1 (means over
    seeds). SHD against RT-ESD: F1 and angular error not worse than RT-ESD's beyond RT-ESD's 95% CI.
    """
    lines = []
    for res in RESOLUTIONS:
        ours, csd = _f1_and_angle(result, "SHD-TV", res), _f1_and_angle(result, "CSD (lmax 8)", res)
        if ours is None or csd is None:
            continue
        gain, reduction = ours[0][0] - csd[0][0], 1 - ours[1][0] / csd[1][0]
        if res == "low":
            met = gain >= MIN_F1_GAIN and reduction >= MIN_ANGLE_REDUCTION
            wanted = f"≥ {MIN_F1_GAIN:.2f} higher F1 and ≥ {MIN_ANGLE_REDUCTION:.0%} lower angle"
        else:
            met, wanted = gain > 0 and reduction > 0, "higher F1 and lower angle"
        lines.append(
            f"- SHD-TV against CSD (lmax 8), {res} resolution ({wanted}): F1 {ours[0][0]:.3f} vs "
            f"{csd[0][0]:.3f} ({gain:+.3f}), angle {ours[1][0]:.2f}° vs {csd[1][0]:.2f}° "
            f"({abs(reduction):.0%} {'lower' if reduction >= 0 else 'higher'}): {_verdict(met)}."
        )
    for res in RESOLUTIONS:
        shd, rt_esd = _f1_and_angle(result, "SHD", res), _f1_and_angle(result, "RT-ESD", res)
        if shd is None or rt_esd is None:
            continue
        (f1, _), (angle, _) = shd
        (f1_ref, f1_ci), (angle_ref, angle_ci) = ((m, ci or 0.0) for m, ci in rt_esd)
        met = f1 >= f1_ref - f1_ci and angle <= angle_ref + angle_ci
        lines.append(
            f"- SHD against RT-ESD, {res} resolution (not worse beyond RT-ESD's 95% CI): F1 {f1:.3f} vs "
            f"{f1_ref:.3f} ± {f1_ci:.3f}, angle {angle:.2f}° vs {angle_ref:.2f}° ± {angle_ci:.2f}°: "
            f"{_verdict(met)}."
        )
    return lines


def render_markdown(result: dict[str, Any]) -> str:
    """Title, command, settings, the Table 1 layout (high | low), the runtimes and the issue's targets."""
    s = result["settings"]
    lines = [
        *header_lines("Deconvolution methods on the phantom test volume (SHD paper Table 1 layout)", result),
        f"Data: `{s['data']}` (size {s['size']}³, SNR {s['snr']}); high = {s['n_volumes']['high']} volumes, "
        f"low = {s['n_volumes']['low']} (b=0 + 29 directions of b=1000). Learned methods: {s['epochs']} epochs, "
        f"patch {s['patch_size']}, widths {s['widths']}, seeds {s['seeds']}, trained on `train`. Low resolution "
        "(angular super-resolution, SHD paper §4.2.1): the learned methods read the low-resolution `train` volume "
        "and are trained to reconstruct its full high-resolution series through the response functions, then "
        "deconvolve the low-resolution `val` and `test` volumes; the iterative methods only see the "
        "low-resolution volumes. Thresholds: F1-best "
        "on `val` among 0.05..0.95, scores on `test`; learned rows are mean ± 95% CI (Student t) over seeds. "
        f"RUMBA-SD: {s['rumba_iters']} iterations. FPR = FP/(TP+FP), FNR = FN/(TP+FN), 25° cone.",
        "",
        _provenance(result),
        "",
        *_table(result, COLUMNS),
        "",
        "Runtime on this machine, seconds (training on `train`; inference = fit or prediction of `test`, with "
        "peak extraction), and the learned methods' F1 on their own training volume at the same threshold (seen "
        "fibre geometry; compare with F1 on `test`):",
        "",
        *_table(
            result, (("train_s", "train s", ".1f"), ("infer_s", "infer s", ".1f"), ("f1_train", "F1 on `train`", ".3f"))
        ),
    ]
    targets = target_lines(result)
    if targets:
        lines += ["", "Targets of issue #3 (means over seeds, from the table above):", "", *targets]
    if result["skipped"]:
        by_reason: dict[str, list[str]] = {}
        for name, reason in result["skipped"].items():
            by_reason.setdefault(reason, []).append(name)
        lines += [
            "",
            "Not run here: " + "; ".join(f"{', '.join(names)} ({reason})" for reason, names in by_reason.items()) + ".",
        ]
    lines += ["", "![FPR against angular error](table.png)", ""]
    return "\n".join(lines)


def plot_fpr_angle(result: dict[str, Any], path: Path) -> None:
    """FPR against angular error at the chosen threshold, one column per resolution (SHD paper Fig. 6 A/B).

    Top row: every method; bottom row: the same axes zoomed on the methods whose mean angular error is at most
    ``ZOOM_FACTOR`` times the best one. Circles are iterative methods, squares learned ones (mean ± 95% CI).
    """
    columns = []
    for res in RESOLUTIONS:
        points = []
        for record in result["methods"]:
            summary = record["resolutions"].get(res, {}).get("summary")
            if summary and summary["angle_deg"]["mean"] is not None:
                angle, fpr = summary["angle_deg"], summary["fpr"]
                points.append(
                    ScatterPoint(
                        record["method"], record["learned"], angle["mean"], angle["ci95"], fpr["mean"], fpr["ci95"]
                    )
                )
        columns.append((f"{res} angular resolution", points))
    plot_error_scatter(path, columns, xlabel="angular error (°)", ylabel="FPR", zoom_factor=ZOOM_FACTOR)


def run(args: argparse.Namespace) -> int:
    """Run every selected method and write the table, its JSON record and the figure (``--quick``: on a
    central crop of the volumes, in a temporary copy)."""
    out = Path(args.out)
    if args.resume:  # stored runs are reused and the table made from them replaces the old one
        args.force = True
    unknown = set(args.methods or []) - {m.name for m in METHODS}
    if unknown:
        raise ValueError(f"unknown method(s) {sorted(unknown)}; choose from {[m.name for m in METHODS]}")
    check_report_outputs(args, *([] if args.resume else RunStore(out / RUNS_DIR, False).stored()))
    if not args.quick:
        return _run_table(args, out, Path(args.data))
    with tempfile.TemporaryDirectory(prefix="equidmri-table-") as tmp:
        return _run_table(args, out, crop_phantom_set(args.data, tmp, QUICK_SIZE))


def _run_table(args: argparse.Namespace, out: Path, data: Path) -> int:
    torch.set_num_threads(args.threads)
    base = QUICK if args.quick else Settings()
    settings = Settings(
        epochs=args.epochs or base.epochs,
        patch_size=base.patch_size,
        widths=base.widths,
        rumba_iters=args.rumba_iters or base.rumba_iters,
        threads=args.threads,
    )
    chosen = [m for m in METHODS if not args.methods or m.name in args.methods]
    store = RunStore(out / RUNS_DIR, args.resume, {"data": str(Path(args.data).resolve()), "quick": args.quick})
    for method in chosen:  # refuse stored runs of other settings before any work
        for resolution, seed in planned_runs(method, list(args.seeds)):
            store.get(method.name, resolution, seed, result_settings(method, settings))
    ground_truth = {}
    for volume in ("train", "val", "test"):
        gt_dirs, mask, _ = load_ground_truth(data / volume)
        ground_truth[volume] = (gt_dirs, mask)
    volumes = VolumeSet(data)
    result = start_record(args)
    described = volumes.get("test", "high")
    result["settings"] = {
        "data": str(args.data),
        "size": int(described.data.dwi.shape[0]),
        "snr": _phantom_snr(data),
        "seeds": list(args.seeds),
        "n_volumes": {r: int(volumes.get("test", r).data.dwi.shape[-1]) for r in RESOLUTIONS},
        "epochs": settings.epochs,
        "patch_size": settings.patch_size,
        "widths": list(settings.widths),
        "rumba_iters": settings.rumba_iters,
        "quick": args.quick,
    }
    result["skipped"] = {m.name: "not selected with --methods" for m in METHODS if m not in chosen}
    result["skipped"].update({m.name: m.unavailable() for m in chosen if not m.available()})
    result["methods"] = []
    for method in (m for m in chosen if m.available()):
        try:
            result["methods"].append(run_method(method, volumes, ground_truth, list(args.seeds), settings, store))
        except (RuntimeError, ValueError) as error:  # one failure, not the table
            logger.warning("%s failed: %s", method.name, error)
            result["skipped"][method.name] = f"failed: {' '.join(str(error).split())[:200]}"
    out.mkdir(parents=True, exist_ok=True)
    plot_fpr_angle(result, out / "table.png")
    write_report(args, result, render_markdown(result))
    return 0


def _phantom_snr(data: Path) -> Any:
    return json.loads((data / "test" / "phantom.json").read_text()).get("snr")
