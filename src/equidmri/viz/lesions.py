"""Figure of ``equidmri bench lesions``: ground truth and probability maps of one slice, and ROC curves.

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
