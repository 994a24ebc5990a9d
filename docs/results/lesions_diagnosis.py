"""Why the p×q-space lesion network did not learn, one change at a time (issue 19 follow-up).

Usage, from the repository root (about 15 min of one core)::

    PYTHONPATH=src OMP_NUM_THREADS=1 python docs/results/lesions_diagnosis.py docs/results/lesions_diagnosis.json

Also the standard deviation of the initial network's logits over the mask of the first training volume
(train mode, as the first step sees it: batch statistics in the normalisation). A small setting: phantoms of 8³
voxels, 6 training, 1 validation and 2 test volumes (+ their 2 tilted copies),
20 epochs, seeds 0 and 100; each row trains with the library's ``LesionModel.fit`` (best validation epoch kept)
and is scored with ``equidmri.bench.lesions.scores``. The only stand-in is ``scan_centred_input``: the input of
the first version (DWI over the median b=0 in the mask, minus 1), patched in for the "scan" rows. Writes a JSON
list of rows and prints the markdown table (docs/lesions.md, "Diagnosis").
"""

from __future__ import annotations

import json
import sys
from unittest import mock

import numpy as np
import torch

from equidmri.bench.lesions import METRICS, TEST_SETS, scores
from equidmri.lesions import LesionModel, network_input
from equidmri.lesions.model import q_vectors_of
from equidmri.sims.lesion_set import make_lesion_splits

SEEDS = (0, 100)
COUNTS, SIZE, EPOCHS = (6, 1, 2), 8, 20
# (label, network, input, batch norm, learning rate, Dice weight): one change per row from the first version
ROWS = [
    ("first version (scan-centred input, no norm, BCE)", "pq", "scan", False, 3e-2, 0.0),
    ("+ per-shell standardised input", "pq", "shell", False, 3e-2, 0.0),
    ("+ e3nn BatchNorm (scan-centred input)", "pq", "scan", True, 3e-2, 0.0),
    ("+ per-shell input + BatchNorm", "pq", "shell", True, 3e-2, 0.0),
    ("+ per-shell input + BatchNorm, lr 1e-2", "pq", "shell", True, 1e-2, 0.0),
    ("+ per-shell input + BatchNorm + soft Dice (final)", "pq", "shell", True, 3e-2, 1.0),
    ("cnn, first version (scan-centred input, BCE)", "cnn", "scan", None, 1e-2, 0.0),
    ("cnn + per-shell standardised input", "cnn", "shell", None, 1e-2, 0.0),
    ("cnn + per-shell input + soft Dice (final)", "cnn", "shell", None, 1e-2, 1.0),
]


def scan_centred_input(dwi: np.ndarray, bvals: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    """The first version's input: DWI over the median b=0 in the mask, minus 1, 0 outside the mask."""
    scale = float(np.median(dwi[mask][:, np.asarray(bvals) <= 50.0]))
    x = np.where(mask[..., None], dwi / scale - 1.0, 0.0).astype(np.float32)
    return torch.from_numpy(np.moveaxis(x, -1, 0)[None].copy())


def main(out: str) -> None:
    torch.set_num_threads(1)
    results = []
    for label, network, source, norm, learning_rate, dice_weight in ROWS:
        per_seed = []
        for seed in SEEDS:
            splits = make_lesion_splits("phantom", COUNTS, size=SIZE, seed=seed)
            first = splits["train"][0]
            options = {} if norm is None else {"norm": norm}
            model = LesionModel(network, first.bvals, first.bvecs, **options)
            patches = []
            if source == "scan":
                patches = [
                    mock.patch(f"equidmri.lesions.{m}.network_input", scan_centred_input) for m in ("train", "model")
                ]
            for patch in patches:
                patch.start()
            try:
                with torch.random.fork_rng():  # the initial network of LesionModel.fit (same seed): its logit spread
                    torch.manual_seed(seed)
                    net = model.build()
                    make_input = scan_centred_input if source == "scan" else network_input
                    if network == "pq":
                        net.set_q_vectors(q_vectors_of(first.bvals, first.bvecs).float())
                    with torch.no_grad():
                        logits = net.train().logits(make_input(first.dwi, first.bvals, first.mask))
                    initial_std = float(logits[0][torch.from_numpy(first.mask)].std())
                fit = model.fit(
                    splits["train"], splits["val"], epochs=EPOCHS, seed=seed, learning_rate=learning_rate,
                    dice_weight=dice_weight,
                )  # fmt: skip
                per_seed.append(
                    {t: scores(fit, splits[t])[0] for t in TEST_SETS}
                    | {"history": fit.history, "initial_logit_std": initial_std}
                )
            finally:
                for patch in patches:
                    patch.stop()
        row = {"label": label, "network": network, "input": source, "batch_norm": norm}
        row |= {"learning_rate": learning_rate, "dice_weight": dice_weight, "seeds": per_seed}
        row["mean"] = {t: {m: float(np.mean([s[t][m] for s in per_seed])) for m in METRICS} for t in TEST_SETS}
        results.append(row)
        print(json.dumps({"label": label, "mean": row["mean"]}), flush=True)
    with open(out, "w") as f:
        json.dump({"seeds": SEEDS, "counts": COUNTS, "size": SIZE, "epochs": EPOCHS, "rows": results}, f, indent=1)
    print("| change | test: ROC AUC / AP / Dice | test_rotated: ROC AUC / AP / Dice | initial logit std | first loss |")
    print("|---|---|---|---|---|")
    for row in results:
        cells = [" / ".join(f"{row['mean'][t][m]:.3f}" for m in METRICS) for t in TEST_SETS]
        spread = " / ".join(f"{s['initial_logit_std']:.2g}" for s in row["seeds"])
        first_loss = " / ".join(f"{s['history']['train'][0]:.2f}" for s in row["seeds"])
        print(f"| {row['label']} | {cells[0]} | {cells[1]} | {spread} | {first_loss} |")


if __name__ == "__main__":
    main(sys.argv[1])
