"""Processes launched by ``torchrun``: this process's rank, and the ``torch.distributed`` group of a run.

``torchrun --nproc_per_node N -m equidmri.cli.main ...`` (or ``python -m torch.distributed.run``) starts N
processes with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and the rendezvous address) in their
environment. Without them the command runs as one process, through the same code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from equidmri.cli.logs import LOGGERS

WORLD_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # set by torchrun for every process it starts

__all__ = ["launched_rank", "process_group", "quiet_other_ranks", "synchronise"]


def launched_rank() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment; ``(0, 1, 0)`` when not launched by it.

    Raises
    ------
    ValueError
        If the variables are not integers or the rank is outside ``[0, world_size)``.
    """
    if "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    try:
        rank, world_size, local_rank = (int(os.environ.get(name, "0")) for name in WORLD_ENV)
    except ValueError as error:
        raise ValueError(f"torchrun's {', '.join(WORLD_ENV)} must be integers: {error}") from error
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK {rank} is not in [0, WORLD_SIZE={world_size})")
    return rank, world_size, local_rank


@contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """The ``torch.distributed`` group of a torchrun launch (gloo on CPU, nccl on CUDA) for the ``with`` block,
    and this process's device: ``cuda`` without an index becomes ``cuda:LOCAL_RANK``. Without torchrun, nothing
    is initialised and ``device`` is returned as it is."""
    if "WORLD_SIZE" not in os.environ:
        yield device
        return
    _, _, local_rank = launched_rank()
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()


def synchronise() -> None:
    """Wait for every process of the group (nothing when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def quiet_other_ranks(rank: int) -> None:
    """Processes other than rank 0 log errors only, warnings included (rank 0 speaks for the run; the levels
    are restored when the command's logging ends)."""
    if rank > 0:
        for name in LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
