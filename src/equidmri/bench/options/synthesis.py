"""Which synthesis mode makes good training data? The self-adaptive autoencoder as a quality metric (Sadegheih,
Weninger & Merhof 2023; issue 21 §2).

``equidmri bench synthesis [--quick] [--n-train N] [--epochs E] [--seeds S] [--phantom-size P] [--fa-epochs E]``

For every subject and every mode of :data:`equidmri.synth.defaults.MODES` (``syn``, ``sample-mean``, ``sample``,
``random-wm``) and every seed: calibrate the synthesis on the subject (:func:`equidmri.synth.calibrate`), draw
``--n-train`` synthetic voxels on its gradient scheme at its estimated SNR, train the self-adaptive autoencoder
on them (Adam, batch 128, learning rate 3e-3, ``--epochs``) and reconstruct the subject's **real** voxels, which
it never saw. Errors against the measured signal (the paper's measures, :func:`equidmri.synth.quality.voxel_errors`):
signal MAE over the diffusion-weighted volumes, MAE of the FA of dipy's WLS tensor fit, and the angle between the
fits' principal eigenvectors; in white matter (FA > 0.3 of the measured signal's own tensor fit) and in every
mask voxel.

Subjects: dipy's ``small_64D`` (b = 1000 s/mm², 64 directions), ``small_101D`` (q-space, b = 300-4065) and
``small_25`` (b = 2000, 25 directions), every voxel of the crop (``compute_mask``); and a held-out phantom: the
synthesis is calibrated on one phantom of the project's generator (``--phantom-size``³ voxels, b=0 ×2 + 30
directions at b = 1000 and 2000, SNR 30) and tested on another of new geometry on the same scheme, whose
noise-free signal is also scored against (the truth).

Statistics: mean ± sd over the seeds (each seed draws new synthetic voxels and a new initialisation); paired
Wilcoxon signed-rank tests (``scipy.stats.wilcoxon``, two-sided) **over voxels** of each voxel's error averaged
over the seeds, for every pair of modes. Diagnostics: the autoencoder of each mode on held-out synthetic voxels of
every mode (against their noise-free signal), and each subject's calibrated WM diffusivities beside
``random-wm``'s ranges. Practical use: a small MLP (``equidmri.microstructure.networks.FCN``, hidden widths 64, 32)
trained on each mode's synthetic voxels to give the FA of dipy's tensor fit to their noise-free signal, scored on
each subject against dipy's FA of the measured signal (the phantom: of its noise-free signal, with dipy's FA of
the noisy signal as the reference row).

Writes ``OUT/synthesis.json``, ``OUT/synthesis.md`` and ``OUT/synthesis.png`` (``--out``, default
``docs/results``).
"""

from __future__ import annotations

import argparse

from equidmri.bench.catalog import BENCHES
from equidmri.bench.report import add_report_args, add_size_args

NAME = "synthesis"
SIZES = ("n_train", "epochs", "seeds", "phantom_size", "fa_epochs")  # the options; held_out and real are fixed
DEFAULTS = {
    "n_train": 2000,
    "epochs": 240,
    "seeds": 3,
    "phantom_size": 20,
    "fa_epochs": 40,
    "held_out": 500,  # held-out synthetic voxels per mode and seed (the diagnostic)
    "real": ("small_64D", "small_101D", "small_25"),
}
QUICK = {
    "n_train": 300,
    "epochs": 60,
    "seeds": 1,
    "phantom_size": 12,
    "fa_epochs": 10,
    "held_out": 150,
    "real": ("small_64D",),
}
HELP = {
    "n_train": "synthetic training voxels per mode and seed",
    "epochs": "training epochs of the autoencoder",
    "seeds": "seeds (synthetic draws and initialisations) per mode",
    "phantom_size": "edge of the two phantoms, voxels",
    "fa_epochs": "training epochs of the FA estimator",
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench synthesis``."""
    parser = subparsers.add_parser(
        "synthesis", help=BENCHES["synthesis"].summary, description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    group = add_size_args(parser, HELP, DEFAULTS, QUICK)
    group.add_argument("--seed", type=int, default=0, help="first seed (default: %(default)s)")
    add_report_args(parser, NAME, f"a tiny run for the tests, small_64D and the phantom only: {QUICK}")
    return parser
