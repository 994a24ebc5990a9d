"""``equidmri bench lesions``: the p×q-space network against a 3D CNN on synthetic lesions (issue 19 §3).

The data, the models, the metrics and the options: :mod:`equidmri.bench.options.lesions` (``--help``).
"""

from __future__ import annotations

import argparse
import logging
import math
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score, roc_curve

from equidmri.bench.fa_report import footer
from equidmri.bench.options.lesions import DEFAULTS, QUICK, QUICK_TEST, QUICK_VAL, TEST, VAL
from equidmri.bench.report import check_report_outputs, fmt, header_lines, start_figure_report, write_report
from equidmri.dmri.gradients import make_gtab
from equidmri.lesions import NETWORKS, LesionFit, LesionModel, parameter_count
from equidmri.sims.lesion_set import make_lesion_splits
from equidmri.sims.lesions import LesionVolume
from equidmri.viz.lesions import plot_lesion_maps, plot_size_maps, plot_size_sweep

logger = logging.getLogger(__name__)

TEST_SETS = ("test", "test_rotated")
METRICS = {"roc_auc": "ROC AUC", "average_precision": "AP", "dice": "Dice at 0.5"}
THRESHOLD = 0.5
PAPER = {"roc_auc": 0.982, "average_precision": 0.630, "dice": 0.592}  # Müller et al. Table 1, equivariant, MS data
SEED_STRIDE = 100  # data seed of seed index i: i × SEED_STRIDE (splits use offsets below 5000 + volumes)


def scores(fit: LesionFit, volumes: list[LesionVolume]) -> tuple[dict[str, float], np.ndarray, np.ndarray, list]:
    """Metrics over the pooled mask voxels of ``volumes``; also the labels, the probabilities and the maps."""
    maps = [fit.predict(v.dwi, make_gtab(v.bvals, v.bvecs), v.mask) for v in volumes]
    labels = np.concatenate([v.labels[v.mask] for v in volumes])
    probability = np.concatenate([m[v.mask] for m, v in zip(maps, volumes)])
    result = {
        "roc_auc": float(roc_auc_score(labels, probability)),
        "average_precision": float(average_precision_score(labels, probability)),
        "dice": float(f1_score(labels, probability >= THRESHOLD, zero_division=0.0)),
    }
    return result, labels, probability, maps


def interval(values: list[float]) -> dict[str, float | None]:
    """Mean and half-width of the 95 % t-interval (None for one value)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return {"mean": mean, "ci95": None, "n": len(values)}
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values)))
    return {"mean": mean, "ci95": half, "n": len(values)}


def run(args: argparse.Namespace) -> int:
    """Generate the data per seed, train both networks per fraction, score, write JSON, markdown and figure."""
    options = dict(QUICK if args.quick else DEFAULTS)
    figure, record = start_figure_report(args, options)
    sizes_figure, maps_figure = (figure.with_name(f"{figure.stem}_{part}.png") for part in ("sizes", "maps"))
    check_report_outputs(args, sizes_figure, maps_figure)
    val, test = (QUICK_VAL, QUICK_TEST) if args.quick else (VAL, TEST)
    record["settings"] = {
        "synthetic": True,
        **{k: getattr(args, k) for k in options},
        "val": val,
        "test": test,
        "threshold": THRESHOLD,
    }
    runs: list[dict[str, Any]] = []
    example: dict[Any, Any] = {}
    size_maps: dict[tuple[str, int], np.ndarray] = {}
    for seed_index in range(args.seeds):
        seed = seed_index * SEED_STRIDE
        splits = make_lesion_splits("phantom", (args.train, val, test), size=args.size, seed=seed)
        for fraction in args.fractions:
            n_train = max(1, round(fraction * args.train))
            for network in NETWORKS:
                first = splits["train"][0]
                model = LesionModel(network, first.bvals, first.bvecs)
                config = {"epochs": args.epochs, "seed": seed, "dice_weight": args.dice_weight}
                fit = model.fit(splits["train"][:n_train], splits["val"], **config)
                entry = {"seed": seed, "fraction": fraction, "n_train": n_train, "network": network}
                entry |= {"parameters": parameter_count(fit.net), "history": fit.history}
                for test_set in TEST_SETS:
                    result, labels, probability, maps = scores(fit, splits[test_set])
                    entry[test_set] = result
                    if seed_index == 0 and test_set == "test":
                        size_maps[(network, n_train)] = maps[0]
                    if seed_index == 0 and fraction == max(args.fractions):
                        fpr, tpr, _ = roc_curve(labels, probability)
                        example[(network, test_set)] = (maps[0], fpr, tpr)
                        example[("truth", test_set)] = (splits[test_set][0].labels, splits[test_set][0].mask)
                logger.info("%s", entry)
                runs.append(entry)
    record["runs"] = runs
    record["summary"] = summarise(runs)
    record["claims"] = claims(record["summary"])
    plot_lesion_maps(figure, example, TEST_SETS, NETWORKS, footer(record))
    plot_size_sweep(sizes_figure, record["summary"], METRICS, footer(record))
    plot_size_maps(maps_figure, example[("truth", "test")], size_maps, NETWORKS, footer(record))
    write_report(args, record, render_markdown(record, (figure.name, sizes_figure.name, maps_figure.name)))
    return 0


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (network, fraction, test set): each metric's mean and 95 % interval over seeds."""
    rows = []
    for network in NETWORKS:
        for fraction in sorted({r["fraction"] for r in runs}):
            chosen = [r for r in runs if r["network"] == network and r["fraction"] == fraction]
            for test_set in TEST_SETS:
                row = {"network": network, "fraction": fraction, "n_train": chosen[0]["n_train"], "test_set": test_set}
                row["parameters"] = chosen[0]["parameters"]
                row |= {m: interval([r[test_set][m] for r in chosen]) for m in METRICS}
                rows.append(row)
    return rows


def _cell(stat: dict[str, Any]) -> str:
    return fmt(stat["mean"], ".3f") + ("" if stat["ci95"] is None else f" ± {stat['ci95']:.3f}")


def claims(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paper's claims checked on the means over seeds: the equivariant network better on all three metrics
    with all training volumes; on the fraction nearest ¼ at least as good as the CNN on all of them (Müller et al.,
    Fig. 2); and, on the tilted test set, a larger advantage than on the untilted one."""
    mean = {(r["network"], r["fraction"], r["test_set"]): {m: r[m]["mean"] for m in METRICS} for r in summary}
    fractions = sorted({r["fraction"] for r in summary})
    full, quarter = fractions[-1], min(fractions, key=lambda f: abs(f - 0.25))
    checks = []
    for test_set in TEST_SETS:
        pq, cnn = mean[("pq", full, test_set)], mean[("cnn", full, test_set)]
        checks.append(_claim(f"pq better than cnn on all three metrics ({test_set}, all training volumes)", pq, cnn))
        if quarter != full:
            pq_quarter = mean[("pq", quarter, test_set)]
            checks.append(_claim(f"pq on {quarter:.3g} of the volumes >= cnn on all ({test_set})", pq_quarter, cnn))
    gaps = {t: {m: mean[("pq", full, t)][m] - mean[("cnn", full, t)][m] for m in METRICS} for t in TEST_SETS}
    checks.append(
        {
            "claim": "the pq advantage is larger on test_rotated than on test (all training volumes)",
            "holds": all(gaps["test_rotated"][m] > gaps["test"][m] for m in METRICS),
            "pq_minus_cnn": gaps,
        }
    )
    return checks


def _claim(text: str, pq: dict[str, float], cnn: dict[str, float]) -> dict[str, Any]:
    holds = all(pq[m] >= cnn[m] if "=" in text else pq[m] > cnn[m] for m in METRICS)
    return {"claim": text, "holds": holds, "pq": pq, "cnn": cnn}


def _claim_line(check: dict[str, Any]) -> str:
    verdict = "**holds**" if check["holds"] else "**does not hold**"
    if "pq_minus_cnn" in check:
        numbers = "; ".join(
            f"{t}: " + ", ".join(f"{METRICS[m]} {g:+.3f}" for m, g in gap.items())
            for t, gap in check["pq_minus_cnn"].items()
        )
        return f"- {check['claim']}: {verdict} (pq − cnn, {numbers})"
    numbers = ", ".join(f"{METRICS[m]} {check['pq'][m]:.3f} vs {check['cnn'][m]:.3f}" for m in METRICS)
    return f"- {check['claim']}: {verdict} (pq vs cnn: {numbers})"


def render_markdown(record: dict[str, Any], figure_names: tuple[str, str, str]) -> str:
    """The page: settings, the table (mean ± 95 % CI over seeds), the claims, the paper's numbers, the figures."""
    s = record["settings"]
    lines = header_lines("Lesion segmentation on synthetic lesions: p×q-space network vs 3D CNN", record)
    lines += [
        f"**Synthetic data** (docs/lesions.md): phantoms of {s['size']}³ voxels, {s['train']} training, {s['val']} "
        f"validation and {s['test']} test volumes per seed, {s['seeds']} seed(s), {s['epochs']} epoch(s), loss BCE + "
        f"{s['dice_weight']} × (1 − soft Dice) for both networks; "
        "`test_rotated` = the test subjects tilted by exact 90° grid rotations and re-simulated on the training "
        "protocol. Metrics over all mask voxels of a test set pooled; mean ± half-width of the 95 % t-interval "
        "over seeds (no interval for one seed).",
        "",
        "| network | parameters | training volumes | test set | " + " | ".join(METRICS.values()) + " |",
        "|---|---|---|---|" + "---|" * len(METRICS),
    ]
    for row in record["summary"]:
        cells = [_cell(row[m]) for m in METRICS]
        lines.append(
            f"| {row['network']} | {row['parameters']} | {row['n_train']} | {row['test_set']} | {' | '.join(cells)} |"
        )
    paper = ", ".join(f"{METRICS[m]} {v}" for m, v in PAPER.items())
    lines += ["", "The paper's claims on these data (means over seeds):", ""]
    lines += [_claim_line(check) for check in record["claims"]]
    maps, sizes, size_maps = figure_names
    lines += [
        "",
        f"Müller et al. (arXiv:2102.06942), equivariant network on real MS data: {paper}; with ¼ of the training "
        "scans it matches the CNN trained on all — a different task (real lesions, full-size scans, far longer "
        "training); the numbers above are not comparable to them.",
        "",
        f"![example slices and ROC curves]({maps})",
        "",
        "Fig. 1: one slice of the first test volume and of its tilted copy (ground truth, both networks' "
        "probabilities) at the largest training fraction, and the ROC curves of the pooled test voxels (first "
        "seed).",
        "",
        f"![metrics against training-set size]({sizes})",
        "",
        "Fig. 2: ROC AUC, AP and Dice at 0.5 against the number of training volumes (mean ± 95 % interval over "
        "seeds; solid: test, dashed: test_rotated).",
        "",
        f"![segmentations across training-set sizes]({size_maps})",
        "",
        "Fig. 3: the first test volume's probability maps for each number of training volumes (first seed).",
    ]
    return "\n".join(lines)
