"""The experiment of ``equidmri bench mnist``: R³×S² MNIST segmentation under rotations (SHD paper App. B,
Fig. 11).

The data, the networks, the training and the score, and the options: :mod:`equidmri.bench.options.mnist`
(``equidmri bench mnist --help``).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from equidmri.bench.options.mnist import DEFAULTS, QUICK
from equidmri.bench.report import (
    header_lines,
    start_figure_report,
    write_report,
)
from equidmri.nn.models import build_model
from equidmri.sims.digits import N_CLASSES, SLICE, DigitVolumes, load_digit_images, make_volumes, split_images
from equidmri.viz.results import BarPanel, plot_bar_panels

logger = logging.getLogger(__name__)

MODELS = {  # name -> (label, registered network)
    "e3xso3": ("E(3)×SO(3) (RT-ESD)", "rt-esd"),
    "e3-sh": ("E(3)-SH (CNN on SH)", "cnn"),
    "concat-so3": ("Concat-SO(3) (Concat-ESD)", "concat-esd"),
    "so3": ("voxel-wise SO(3) (ESD)", "esd"),
}
SETTINGS = {  # name -> (training set rotated?, label)
    "train-without": (False, "trained without rotations, tested with"),
    "train-with": (True, "trained with rotations, tested with"),
}
WIDTHS = (8, 16)
KERNEL_SIZES = (3, 1)
BATCH = 8  # the paper's batch size
LEARNING_RATE = 3e-3  # the paper's
DECAY_AT = (0.5, 0.7, 0.9)  # fractions of the epochs where the learning rate is halved (the paper's)
DECAY = 0.5
DICE_WEIGHT = 0.5  # loss = DICE_WEIGHT * Dice + (1 - DICE_WEIGHT) * cross-entropy (reference code)


def sh_lmax(nside: int) -> int:
    """SH degree of the E(3)-SH network: ``2 nside`` ((2 nside + 1)² coefficients from 12 nside² vertices)."""
    return 2 * nside


class Segmenter(nn.Module):
    """A registered U-Net's last feature map, averaged over the vertices, then a per-voxel linear classifier.

    Input ``(B, 1, X, Y, Z, V)``; output logits ``(B, N_CLASSES, X, Y, Z)``.
    """

    def __init__(self, model: str, nside: int) -> None:
        super().__init__()
        extra = {"lmax": sh_lmax(nside)} if MODELS[model][1] == "cnn" else {}
        self.net = build_model(
            MODELS[model][1],
            in_channels=1,
            nside=nside,
            widths=WIDTHS,
            kernel_sizes=KERNEL_SIZES,
            hemisphere=False,
            **extra,
        )
        self.net.head.requires_grad_(False)  # the deconvolution head is not used
        self.classify = nn.Linear(WIDTHS[0], N_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.net.embed(x).mean(dim=1)).permute(0, 4, 1, 2, 3)


def class_weights(labels: np.ndarray) -> Tensor:
    """1 / class frequency, normalised to sum 1, shape ``(N_CLASSES,)`` (classes absent: weight of frequency 1/n)."""
    counts = np.bincount(labels.ravel(), minlength=N_CLASSES).astype(np.float64)
    weights = 1.0 / np.maximum(counts, 1.0) * labels.size
    return torch.tensor(weights / weights.sum(), dtype=torch.float32)


def dice_ce_loss(logits: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
    """``0.5 (1 - weighted soft Dice) + 0.5 weighted cross-entropy`` (Sudre et al. 2017 generalised Dice)."""
    probs = logits.softmax(dim=1)
    one_hot = nn.functional.one_hot(labels, N_CLASSES).permute(0, 4, 1, 2, 3).to(probs.dtype)
    dims = (0, 2, 3, 4)
    overlap = (weights * (probs * one_hot).sum(dims)).sum()
    total = (weights * (probs + one_hot).sum(dims)).sum()
    dice = 1 - 2 * overlap / total
    return DICE_WEIGHT * dice + (1 - DICE_WEIGHT) * nn.functional.cross_entropy(logits, labels, weight=weights)


def dice_scores(prediction: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Dice ``2|P ∩ T| / (|P| + |T|)`` per digit class 1-9 over all voxels, shape ``(9,)``; NaN if absent from T."""
    scores = []
    for c in range(1, N_CLASSES):
        p, t = prediction == c, labels == c
        scores.append(2.0 * (p & t).sum() / (p.sum() + t.sum()) if t.any() else np.nan)
    return np.array(scores)


def train_model(model: str, data: DigitVolumes, epochs: int, seed: int, nside: int) -> tuple[Segmenter, list]:
    """Train one segmenter; returns it (eval mode) and the mean loss of each epoch."""
    torch.manual_seed(seed)
    net = Segmenter(model, nside)
    weights = class_weights(data.labels)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=LEARNING_RATE)
    milestones = sorted({max(1, round(f * epochs)) for f in DECAY_AT})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=DECAY)
    signals, labels = torch.from_numpy(data.signals), torch.from_numpy(data.labels)
    generator = torch.Generator().manual_seed(seed)
    history = []
    net.train()
    for _ in range(epochs):
        order, losses = torch.randperm(len(labels), generator=generator), []
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            optimizer.zero_grad()
            loss = dice_ce_loss(net(signals[batch, None]), labels[batch], weights)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        scheduler.step()
        history.append(float(np.mean(losses)))
    return net.eval(), history


def predict(net: Segmenter, data: DigitVolumes) -> np.ndarray:
    """Hard segmentation ``(N, X, Y, Z)`` of every volume, one at a time."""
    with torch.no_grad():
        return np.stack([net(torch.from_numpy(s)[None, None]).argmax(dim=1)[0].numpy() for s in data.signals])


def build_data(args: argparse.Namespace) -> dict[str, DigitVolumes]:
    """``train``, ``train-rotated``, ``test`` and ``test-rotated`` volumes from disjoint digit images."""
    rng = np.random.default_rng(args.seed)
    images, targets = load_digit_images()
    pools = split_images(targets, rng)
    counts = {name: max(1, round(f * args.volumes)) for name, f in (("train", 716 / 1000), ("test", 142 / 1000))}
    data = {}
    for split in ("train", "test"):
        for rotate in (False, True):
            pool = pools[split]
            data[split + ("-rotated" if rotate else "")] = make_volumes(
                counts[split], rng, images[pool], targets[pool], nside=args.nside, depth=args.depth, rotate=rotate
            )
    return data


def run_experiment(args: argparse.Namespace, data: dict[str, DigitVolumes]) -> list[dict[str, Any]]:
    """Train every (model, setting, seed) and score it on both test sets."""
    records = []
    for setting, (rotated, _) in SETTINGS.items():
        train_set = data["train-rotated" if rotated else "train"]
        for model in MODELS:
            for seed in range(args.seed, args.seed + args.seeds):
                start = time.perf_counter()
                net, history = train_model(model, train_set, args.epochs, seed, args.nside)
                train_s = time.perf_counter() - start
                scores = {
                    name: dice_scores(predict(net, data[name]), data[name].labels) for name in ("test-rotated", "test")
                }
                records.append(
                    {
                        "model": model,
                        "setting": setting,
                        "seed": seed,
                        "dice_test_rotated": float(np.nanmean(scores["test-rotated"])),
                        "dice_test": float(np.nanmean(scores["test"])),
                        "dice_per_class_test_rotated": [
                            None if np.isnan(x) else float(x) for x in scores["test-rotated"]
                        ],
                        "loss_history": history,
                        "train_s": train_s,
                    }
                )
                logger.info(
                    "%s %s seed %d: Dice %.3f (rotated test), %.0f s",
                    model,
                    setting,
                    seed,
                    records[-1]["dice_test_rotated"],
                    train_s,
                )
    return records


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sd over seeds per (model, setting)."""
    rows = []
    for setting in SETTINGS:
        for model in MODELS:
            cell = [r for r in records if r["model"] == model and r["setting"] == setting]
            rotated = [r["dice_test_rotated"] for r in cell]
            plain = [r["dice_test"] for r in cell]
            rows.append(
                {
                    "model": model,
                    "setting": setting,
                    "dice_mean": float(np.mean(rotated)),
                    "dice_std": float(np.std(rotated)),
                    "dice_unrotated_mean": float(np.mean(plain)),
                    "dice_unrotated_std": float(np.std(plain)),
                    "n_seeds": len(cell),
                }
            )
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Fig. 11 D/E: Dice on the rotated test set per model, one group per training setting."""
    cells = {(r["model"], r["setting"]): r for r in rows}
    means = np.array([[cells[m, s]["dice_mean"] for s in SETTINGS] for m in MODELS])
    stds = np.array([[cells[m, s]["dice_std"] for s in SETTINGS] for m in MODELS])
    plot_bar_panels(
        path,
        [BarPanel("", means, stds)],
        [label for label, _ in MODELS.values()],
        [label for _, label in SETTINGS.values()],
        ylabel="Dice, digits 1–9 (rotated test set)",
        ylim=(0.0, 1.0),
        panel_size=(8.0, 4.0),
    )


def render_markdown(result: dict[str, Any], figure: Path) -> str:
    """The results page: data, schedule, the Dice table, the ranking and the figure."""
    s = result["settings"]
    lines = [
        *header_lines("R³×S² MNIST segmentation (SHD paper App. B, Fig. 11 D/E)", result),
        f"Digits: scikit-learn's bundled `load_digits` (8×8 images; MNIST cannot be downloaded here), images split "
        f"in the proportions 716/142/142. Volumes: {SLICE}×{SLICE}×{s['depth']} voxels, HEALPix nside {s['nside']} "
        f"({12 * s['nside'] ** 2} vertices) on every voxel; {s['n_train']} training and {s['n_test']} test volumes "
        "per data set (the paper: 716/142/142 volumes of 16³ at nside 4). Rotated data: per volume, a uniform "
        "random rotation of the voxel grid about the tube axis z (the paper: any rotation; a thin slab stays a "
        "slab only under rotations about its normal) and an independent uniform rotation of SO(3) of every "
        "voxel's sphere. Models: "
        + ", ".join(f"{label} (`{name}`)" for label, name in MODELS.values())
        + f"; widths {WIDTHS}, kernel sizes {KERNEL_SIZES}. Schedule: Adam, batch {BATCH}, lr {LEARNING_RATE:g} "
        f"halved at 50/70/90% of {s['epochs']} epochs (the paper's schedule with the epochs scaled to a 2-core "
        f"CPU); {s['seeds']} seeds; loss 0.5 Dice + 0.5 cross-entropy with class weights. No model selection "
        f"(the last epoch is scored; the validation split is not used). E(3)-SH works on all SH degrees "
        f"<= {s['sh_lmax']}. The volumes are {s['depth']} voxel(s) thick instead of the paper's 16 (16× fewer "
        "voxels), which is what makes the runs fit on a 2-core CPU.",
        "",
        "Dice of the hard segmentation per digit class 1–9 over the whole test split, mean over the classes "
        "present in the test labels; "
        "mean ± sd over seeds.",
        "",
        "| model | setting | Dice, rotated test | Dice, unrotated test | seeds |",
        "|---|---|---:|---:|---:|",
    ]
    for row in result["summary"]:
        lines.append(
            f"| {MODELS[row['model']][0]} | {SETTINGS[row['setting']][1]} | "
            f"{row['dice_mean']:.3f} ± {row['dice_std']:.3f} | "
            f"{row['dice_unrotated_mean']:.3f} ± {row['dice_unrotated_std']:.3f} | {row['n_seeds']} |"
        )
    lines.append("")
    for setting, (_, label) in SETTINGS.items():
        ranked = sorted((r for r in result["summary"] if r["setting"] == setting), key=lambda r: -r["dice_mean"])
        lines.append(
            f"Ranking, {label}: " + " > ".join(f"{MODELS[r['model']][0]} ({r['dice_mean']:.3f})" for r in ranked) + "."
        )
        lines.append("")
    lines += [f"![Dice per model]({figure.name})", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Generate the data, train and score every model, write the JSON record, the page and the figure."""
    figure, result = start_figure_report(args, QUICK if args.quick else DEFAULTS)
    start = time.perf_counter()
    data = build_data(args)
    records = run_experiment(args, data)
    result.update(
        {
            "records": records,
            "summary": summarise(records),
            "elapsed_s": time.perf_counter() - start,
            "settings": {
                "volumes": args.volumes,
                "epochs": args.epochs,
                "seeds": args.seeds,
                "nside": args.nside,
                "depth": args.depth,
                "seed": args.seed,
                "n_train": len(data["train"].labels),
                "n_test": len(data["test"].labels),
                "widths": list(WIDTHS),
                "kernel_sizes": list(KERNEL_SIZES),
                "batch": BATCH,
                "lr": LEARNING_RATE,
                "decay_at": list(DECAY_AT),
                "sh_lmax": sh_lmax(args.nside),
            },
        }
    )
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot(result["summary"], figure)
    write_report(args, result, render_markdown(result, figure))
    return 0
