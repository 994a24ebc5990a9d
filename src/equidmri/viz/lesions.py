"""Figures of ``equidmri bench lesions``: ground truth and probability maps of one slice with ROC curves (Fig. 1),
the metrics against the number of training volumes (Fig. 2) and one test volume's maps across them (Fig. 3).

Built on ``matplotlib.figure.Figure`` with an Agg canvas, with a footer line, written atomically
(:func:`equidmri.viz.fa._save`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from equidmri.viz.fa import PANEL_INCHES, _new_figure, _save


def plot_lesion_maps(
    path: str | os.PathLike,
    example: dict[tuple[str, str], Any],
    test_sets: Sequence[str],
    networks: Sequence[str],
    footer: str,
) -> Path:
    """One row per test set: the label map, each network's probability map (middle axial slice), ROC curves.

    ``example[("truth", test_set)] = (labels, mask)`` (``(X, Y, Z)`` bool each);
    ``example[(network, test_set)] = (probability (X, Y, Z), fpr, tpr)``.
    """
    columns = len(networks) + 2
    figure = _new_figure(PANEL_INCHES * columns, PANEL_INCHES * len(test_sets))
    axes = figure.subplots(len(test_sets), columns, squeeze=False)
    for row, test_set in zip(axes, test_sets):
        labels, mask = example[("truth", test_set)]
        z = int(np.argmax(labels.sum(axis=(0, 1))))  # the slice with the most lesion voxels
        panels = [("ground truth", labels[..., z].astype(float))]
        panels += [(network, example[(network, test_set)][0][..., z]) for network in networks]
        for ax, (title, image) in zip(row, panels):
            shown = np.where(mask[..., z], image, np.nan)
            ax.imshow(shown.T, origin="lower", vmin=0.0, vmax=1.0, cmap="magma")
            ax.set_title(f"{title} ({test_set}, z={z})", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        roc = row[-1]
        for network in networks:
            _, fpr, tpr = example[(network, test_set)]
            roc.plot(fpr, tpr, label=network)
        roc.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
        roc.set_title(f"ROC, {test_set}", fontsize=7)
        roc.set_xlabel("false-positive rate", fontsize=7)
        roc.set_ylabel("true-positive rate", fontsize=7)
        roc.legend(fontsize=6)
    return _save(figure, path, footer)


def plot_size_sweep(
    path: str | os.PathLike,
    summary: Sequence[dict[str, Any]],
    metrics: dict[str, str],
    footer: str,
) -> Path:
    """One panel per metric: mean ± 95 % interval over seeds against the number of training volumes, a line per
    network and test set (``summary``: rows of :func:`equidmri.bench.lesions.summarise`; ``metrics``: key -> label).
    """
    figure = _new_figure(PANEL_INCHES * 1.4 * len(metrics), PANEL_INCHES * 1.2)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    curves = sorted({(row["network"], row["test_set"]) for row in summary})
    for ax, (metric, label) in zip(axes, metrics.items()):
        for network, test_set in curves:
            rows = sorted((r for r in summary if (r["network"], r["test_set"]) == (network, test_set)), key=_n_train)
            sizes = [r["n_train"] for r in rows]
            means = [r[metric]["mean"] for r in rows]
            half = [r[metric]["ci95"] or 0.0 for r in rows]
            style = "-" if test_set == "test" else "--"
            ax.errorbar(sizes, means, yerr=half, linestyle=style, marker="o", capsize=2, label=f"{network}, {test_set}")
        ax.set_xticks(sorted({r["n_train"] for r in summary}))
        ax.set_xlabel("training volumes", fontsize=7)
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5)
    return _save(figure, path, footer)


def _n_train(row: dict[str, Any]) -> int:
    return row["n_train"]


def plot_size_maps(
    path: str | os.PathLike,
    truth: tuple[np.ndarray, np.ndarray],
    maps: dict[tuple[str, int], np.ndarray],
    networks: Sequence[str],
    footer: str,
) -> Path:
    """One row per network: the ground truth, then its probability map (middle lesion slice) for each number of
    training volumes. ``truth = (labels, mask)``, ``maps[(network, n_train)]`` ``(X, Y, Z)`` probabilities."""
    labels, mask = truth
    sizes = sorted({n for _, n in maps})
    figure = _new_figure(PANEL_INCHES * (len(sizes) + 1), PANEL_INCHES * len(networks))
    axes = figure.subplots(len(networks), len(sizes) + 1, squeeze=False)
    z = int(np.argmax(labels.sum(axis=(0, 1))))  # the slice with the most lesion voxels
    for row, network in zip(axes, networks):
        panels = [("ground truth", labels[..., z].astype(float))]
        panels += [(f"{network}, {n} training", maps[(network, n)][..., z]) for n in sizes]
        for ax, (title, image) in zip(row, panels):
            ax.imshow(np.where(mask[..., z], image, np.nan).T, origin="lower", vmin=0.0, vmax=1.0, cmap="magma")
            ax.set_title(f"{title} (z={z})", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    return _save(figure, path, footer)
