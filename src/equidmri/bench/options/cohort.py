"""``equidmri bench cohort``: training throughput of ``equidmri train --cohort`` with 1 and 2 processes, and memory.

A synthetic cohort is written to a temporary folder: ``--subjects`` phantoms of ``--size``³ voxels
(:func:`equidmri.sims.phantoms.make_phantom`: random bundles, a CSF blob, Rician noise at SNR 30), each with
its own b=0 + 30 directions at b = 1000 s/mm² and its own mask. Each case trains on it in fresh processes,
``--repeats`` times:

- ``one process``: ``python -m equidmri.cli.main train`` (no ``torch.distributed``);
- ``torchrun, N process(es)``: ``python -m torch.distributed.run --standalone --nproc_per_node N ...`` (DDP over
  gloo on the CPU, nccl with ``--device cuda``).

The machine's ``--threads`` are shared: one process uses them all, N processes ``threads // N`` each.
Throughput is patches per second of wall time over the epochs after the first (the first builds each subject's
operators): an epoch is ``steps per process × processes × batch size`` patches (``run.json``'s
``epoch_batches``), timed by ``run.json``'s ``epoch_seconds``; a run's value is the median over its epochs,
a case's the median over the repeats.

Memory: one process trains for one epoch of the same number of steps (``memory_steps`` patches in all,
spread evenly over the subjects with ``--patches-per-epoch``) on cohorts of each of ``--memory-subjects``
subjects of ``--memory-size``³ voxels; rank 0's ``run.json`` holds its peak resident memory after
preparation and after training, and the anonymous and file-backed parts (:func:`equidmri.runtime.memory_mib`).
A memory that follows the batch, not the cohort, stays flat as the cohort grows.
"""

from __future__ import annotations

import argparse

from equidmri.bench.catalog import BENCHES
from equidmri.bench.report import add_report_args

NAME = "cohort"
DEFAULTS = {  # full run: option -> value
    "subjects": 4,
    "size": 24,
    "patch_size": 12,
    "epochs": 4,
    "repeats": 3,
    "widths": None,  # the library's default
    "memory_subjects": [2, 8],
    "memory_size": 48,
    "memory_steps": 16,  # patches of one epoch in every memory run, whatever the cohort's size
}
QUICK = {
    "subjects": 2,
    "size": 8,
    "patch_size": 4,
    "epochs": 2,
    "repeats": 1,
    "widths": [4, 4, 4, 4],
    "memory_subjects": [1, 2],
    "memory_size": 8,
    "memory_steps": 2,
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench cohort``."""
    parser = subparsers.add_parser(
        NAME,
        help=BENCHES[NAME].summary,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_report_args(parser, NAME, f"tiny settings ({QUICK['subjects']} phantoms of {QUICK['size']}³, 1 repeat)")
    group = parser.add_argument_group("cohort (ignored with --quick)")
    for option, metavar, text in (
        ("subjects", "N", "phantoms in the throughput cohort"),
        ("size", "VOXELS", "edge of each phantom, voxels"),
        ("patch-size", "VOXELS", "edge of the training patches, voxels"),
        ("epochs", "N", "epochs per run (the first is not timed)"),
        ("repeats", "N", "runs per case"),
    ):
        group.add_argument(
            f"--{option}",
            type=int,
            metavar=metavar,
            help=f"{text} (default: {DEFAULTS[option.replace('-', '_')]})",
        )
    group.add_argument("--widths", type=int, nargs="+", metavar="C", help="channels per U-Net level (default: train's)")
    group.add_argument(
        "--memory-subjects",
        type=int,
        nargs="+",
        metavar="N",
        help=f"cohort sizes of the memory runs (default: {DEFAULTS['memory_subjects']})",
    )
    group.add_argument(
        "--memory-size",
        type=int,
        metavar="VOXELS",
        help=f"edge of the memory runs' phantoms, voxels (default: {DEFAULTS['memory_size']})",
    )
    return parser
