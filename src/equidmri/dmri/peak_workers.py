"""Start the peak search's worker processes early, while a core would otherwise sit idle (no dipy, no torch here).

:func:`equidmri.dmri.peaks.find_peaks` searches a mask of at least
:data:`~equidmri.dmri.peak_defaults.PARALLEL_MIN_VOXELS` voxels in ``jobs`` joblib (loky) worker processes, and
starting them and importing dipy in them takes about a second. ``deconv`` spends its first seconds on one core
(Python's imports, loading the data, building the network), so it starts them then, from a background thread
(:func:`start_peak_workers`): their start-up runs on the idle core, and ``find_peaks`` later finds them running
(joblib reuses its executor while the worker count is the same).
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import tempfile
import threading

from equidmri.dmri.peak_defaults import PARALLEL_MIN_VOXELS

logger = logging.getLogger(__name__)

__all__ = ["start_peak_workers", "volume_voxels", "warm_up"]


def warm_up(lock: str) -> int:
    """Import the peak search and build its sphere in this process (a worker's first task); return the pid.

    The workers take turns (an exclusive ``flock`` on the file ``lock``), so that they share the one idle core
    instead of both taking a share of the busy one."""
    with open(lock, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        from equidmri.dmri.peaks import peak_sphere

        peak_sphere()
    return os.getpid()


def volume_voxels(dwi: str | os.PathLike) -> int | None:
    """Voxels of the spatial grid of the NIfTI ``dwi`` from its header alone (no data read), ``None`` if it cannot
    be read (the command's own loading then reports why)."""
    import nibabel as nib

    try:
        shape = nib.load(os.fspath(dwi)).shape
    except Exception:  # noqa: BLE001 - any unreadable file: no early start, the loading says what is wrong
        return None
    return math.prod(shape[:3]) if len(shape) >= 3 else None


def start_peak_workers(jobs: int, voxels: int | None) -> threading.Thread | None:
    """Start ``find_peaks``'s ``jobs`` worker processes in a background thread, each importing the peak search
    (:func:`warm_up`), when a search of up to ``voxels`` mask voxels would use them (``jobs`` >= 2 and ``voxels``
    >= :data:`~equidmri.dmri.peak_defaults.PARALLEL_MIN_VOXELS`; a mask holds at most the volume's voxels, so a
    smaller mask may leave them unused).

    Best effort: if the workers cannot start, the thread logs it at debug level and ``find_peaks`` starts them
    itself or searches in this process. Join the returned thread (``None``: nothing started) before exiting.
    """
    if jobs < 2 or voxels is None or voxels < PARALLEL_MIN_VOXELS:
        return None
    thread = threading.Thread(target=_start, args=(jobs,), name="equidmri-peak-workers", daemon=True)
    thread.start()
    return thread


def _start(jobs: int) -> None:
    from joblib import Parallel, delayed

    try:
        with tempfile.NamedTemporaryFile(prefix="equidmri-peak-workers-") as lock:
            pids = Parallel(n_jobs=jobs)(delayed(warm_up)(lock.name) for _ in range(jobs))
    except Exception as error:  # noqa: BLE001 - best effort (see start_peak_workers)
        logger.debug("the peak search's workers did not start early (%s)", error)
        return
    logger.debug("peak search workers started early: pids %s", sorted(set(pids)))
