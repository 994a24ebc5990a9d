"""Process settings for CPU work: the allocator, torch's threads and OpenMP's wait policy, a contention watch.

PyTorch's CPU allocator takes memory from ``malloc``, and glibc serves blocks above its mmap threshold (at
most 32 MiB) with fresh ``mmap`` pages and returns them to the kernel on ``free``. The feature maps of the
spherical U-Nets are hundreds of MB, so every new map is first-touch page faults: on this 2-core machine a
170 MB ``a + b`` took 123 ms into a fresh tensor and 27 ms into a reused one. :func:`retain_freed_memory`
makes glibc keep freed memory for reuse instead.

Threads: :func:`default_threads` and :func:`set_passive_wait` choose how many threads torch uses and how
they wait; :func:`on_threads` shares short pieces of work out over those threads; :class:`ContentionWatch` says
once when other processes slow the run down.

Matrix products: :func:`matmul` runs the CPU products of inference through numpy's BLAS (OpenBLAS), which was
measured faster than torch's (MKL) for the small and batched products of the refinement and the spherical layers.
:func:`product_dtype` says in which precision products that tolerate bfloat16 run: in it where the CPU multiplies
bfloat16 natively.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    import torch
    from torch import Tensor

logger = logging.getLogger(__name__)

# mallopt parameters of glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # bytes: free memory at the heap's top kept up to this size (the largest int)

THREADS_ENV = ("EQUIDMRI_THREADS", "OMP_NUM_THREADS")  # read in this order by default_threads
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"  # OpenMP 4.5 spec, §4.8: ACTIVE spins, PASSIVE sleeps
CONTENTION_INTERVAL = 20.0  # s: window of ContentionWatch (long enough to span a few epochs)
# CPUs this process must have used over a window for ContentionWatch to judge it. A process that mostly waits for
# its child processes wakes up now and then behind them: beside 2 busy children on 2 cores, a parent ran 10 ms and
# waited 42 ms in 5 s, and bench pretrained's parent warned of a 6.5x slow-down while it only waited
CONTENTION_MIN_BUSY = 0.25
MEMORY_FIELDS = {  # /proc/self/status (Linux, proc(5)) field -> name in memory_mib()
    "VmHWM": "peak_rss_mib",  # peak resident memory
    "RssAnon": "rss_anon_mib",  # resident anonymous memory now (arrays, tensors)
    "RssFile": "rss_file_mib",  # resident file-backed pages now (libraries, memory-mapped files: reclaimable)
}
PRECISIONS = ("auto", "float32", "bfloat16")  # choices of product_dtype
Result = TypeVar("Result")  # what on_threads's work returns
_ONE_THREAD = threading.local()  # .active: this thread runs on_threads's work, single-threaded (see matmul)


def retain_freed_memory() -> bool:
    """Make glibc's malloc serve every block from its heap and keep freed memory (no mmap, no trimming).

    Peak memory is unchanged; the resident memory stays at its peak until the process ends. Affects the
    whole process; the CLI calls it once at start.

    Returns
    -------
    bool
        ``True`` if both settings took effect, ``False`` where glibc is absent (macOS, Windows, musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    done = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not done:
        logger.debug("mallopt refused the settings; freed memory goes back to the kernel")
    return done


def available_cpus() -> int:
    """CPUs this process may use: the least of the machine's, its affinity and its cgroup CPU quota.

    Returns
    -------
    int
        At least 1. Read with joblib's ``loky.cpu_count`` (also honours ``LOKY_MAX_CPU_COUNT``).
    """
    from joblib.externals.loky import cpu_count  # 0.1 s of imports, paid only when threads are chosen

    return max(1, cpu_count())


def default_threads() -> int:
    """Torch's CPU threads when ``--threads`` is not given.

    ``EQUIDMRI_THREADS`` if set, else ``OMP_NUM_THREADS`` if set, else :func:`available_cpus`. With
    :func:`set_passive_wait` in effect, using every available CPU was the fastest choice on a shared
    2-core machine both idle and beside one busy process (``docs/results/threads.md``).

    Raises
    ------
    ValueError
        If ``EQUIDMRI_THREADS`` or ``OMP_NUM_THREADS`` is set but not a positive integer.
    """
    for name in THREADS_ENV:
        text = os.environ.get(name, "").strip()
        if text:
            if not text.isdigit() or int(text) < 1:
                raise ValueError(f"{name} must be a positive integer, got {text!r}")
            return int(text)
    return available_cpus()


def set_passive_wait() -> bool:
    """Make OpenMP threads sleep instead of spinning while they wait (``OMP_WAIT_POLICY=PASSIVE``).

    OpenMP reads the variable once, when torch loads it, so this must run before ``import torch``; a
    value already set by the user is kept. Spinning threads compete with any other busy process for
    the same cores: 5 epochs of ``deconv`` on a loaded 2-core machine took 62 s with torch's default
    and 9 s with PASSIVE (``docs/results/threads.md``).

    Returns
    -------
    bool
        ``True`` if the policy is PASSIVE for the torch this process will load.
    """
    if "torch" in sys.modules:
        logger.debug("torch is already imported; OMP_WAIT_POLICY is left as it is")
        return os.environ.get(WAIT_POLICY_ENV, "").upper() == "PASSIVE"
    os.environ.setdefault(WAIT_POLICY_ENV, "PASSIVE")
    return os.environ[WAIT_POLICY_ENV].upper() == "PASSIVE"


def on_threads(work: Callable[[int], Result], items: Sequence[int]) -> list[Result]:
    """``[work(i) for i in items]`` shared out over torch's CPU threads, each item's torch ops single-threaded.

    For work made of short torch ops (about a millisecond each, e.g. a chunk of voxels): with OpenMP's passive
    waiting (:func:`set_passive_wait`) every op pays for waking the threads, and spinning ones compete with other
    processes. Items side by side, one per thread, avoid both (measured on 2 cores: the per-voxel refinement of
    a whole-brain-sized volume 2x as fast, the voxel-wise network 1.7x, see their callers). The caller's grad
    and inference modes (thread-local in torch) hold in the worker threads; torch's thread count is restored
    on return. With one thread, or one item, the items run in turn on the calling thread. Numpy's BLAS runs
    single-threaded meanwhile, and :func:`matmul` uses it in the items' work (not with one item on several
    threads, which runs as it would without on_threads).

    Parameters
    ----------
    work : callable ``int -> Result``
        Independent of the other items (no shared output written in place).
    items : sequence of int

    Returns
    -------
    list
        ``work(i)`` for each item, in the order of ``items``.
    """
    import torch  # not at the top: set_passive_wait must run before torch is imported

    threads = torch.get_num_threads()
    if threads > 1 and len(items) <= 1:
        return [work(i) for i in items]
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def run(item: int) -> Result:
        outer, _ONE_THREAD.active = getattr(_ONE_THREAD, "active", False), True
        try:
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                return work(item)
        finally:
            _ONE_THREAD.active = outer

    with threadpool_limits(1, user_api="blas"):
        if threads == 1:
            return [run(i) for i in items]
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                return list(pool.map(run, items))
        finally:
            torch.set_num_threads(threads)


def matmul(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """``torch.matmul(a, b, out=out)``, computed by numpy's BLAS in the work of :func:`on_threads` (float CPU
    tensors outside autograd).

    torch's CPU wheels multiply with MKL, numpy's with OpenBLAS. On the AMD EPYC of the benchmarks (2 cores, one
    thread each) OpenBLAS was the faster for the products of inference: the refinement's ``(2048, 45) @ (45, 181)``
    101 vs 274 ns per voxel, its ``(2048, 181) @ (181, 45)`` 119 vs 310; the spherical layers' batched channel
    mixing ``(384, 512, 4) @ (384, 4, 4)`` 0.32 vs 1.9 ms, their eigenbasis transforms ``(92, 80) @ (80, 2730)``
    1.3x (development measurements, OpenBLAS 0.3.31). There each thread runs one product at a time, so OpenBLAS
    is single-threaded; anywhere else (torch's threads busy on the same products, a product autograd records, a
    non-CPU device, integer tensors) the product is torch's.

    Parameters
    ----------
    a, b : Tensor
        Broadcast as ``torch.matmul``; same floating dtype.
    out : Tensor, optional
        Written in place and returned (C-contiguous rows, or a slice of columns of such rows).

    Returns
    -------
    Tensor
        ``a @ b`` (``out`` if given); it shares memory with a numpy array.
    """
    import numpy as np
    import torch  # not at the top: set_passive_wait must run before torch is imported

    if (
        not getattr(_ONE_THREAD, "active", False)
        or a.device.type != "cpu"
        or b.device.type != "cpu"
        or a.dtype != b.dtype
        or a.dtype not in (torch.float32, torch.float64)
        or (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad))
    ):
        return torch.matmul(a, b, out=out)
    product = np.matmul(a.detach().numpy(), b.detach().numpy(), out=None if out is None else out.numpy())
    return out if out is not None else torch.from_numpy(product)


def product_dtype(precision: str, device: torch.device | str = "cpu") -> torch.dtype:
    """The dtype in which to run matrix products whose callers accept bfloat16's 8-bit mantissa.

    ``"auto"`` is bfloat16 on a CPU that multiplies it natively (AVX512-BF16 or AMX dot products, as torch
    reports them; oneDNN then runs the products), float32 anywhere else: on CPUs without them bfloat16 is
    emulated and slower, and on a GPU the float32 products are not where the time goes. On the AMD EPYC of
    the benchmarks (AVX512-BF16, one thread) the refinement's ``(2048, 45) @ (45, 181)`` took 91 ns per voxel
    in bfloat16 against 185 in float32 (OpenBLAS), its ``(2048, 181) @ (181, 45)`` 86 against 211
    (development measurements).

    Parameters
    ----------
    precision : str
        One of :data:`PRECISIONS`.
    device : torch.device or str
        Where the products run.

    Raises
    ------
    ValueError
        If ``precision`` is not one of :data:`PRECISIONS`.
    """
    import torch  # not at the top: set_passive_wait must run before torch is imported

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's, private since 2.1
        native = torch.device(device).type == "cpu" and any(getattr(torch.cpu, c, lambda: False)() for c in checks)
        return torch.bfloat16 if native else torch.float32
    return getattr(torch, precision)


def memory_mib() -> dict[str, float]:
    """This process's peak resident memory and its anonymous and file-backed parts now, MiB (:data:`MEMORY_FIELDS`;
    empty where ``/proc/self/status`` does not exist). Pages of memory-mapped files count in the resident memory
    but are the kernel's page cache, dropped under memory pressure."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return {}
    values = {}
    for line in status.read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in MEMORY_FIELDS:
            values[MEMORY_FIELDS[key]] = round(int(rest.split()[0]) / 1024, 1)  # kB
    return values


def _cpu_times_ns() -> tuple[int, int]:
    """Nanoseconds this process's threads have run, and waited runnable for a CPU (Linux schedstat)."""
    run = wait = 0
    for stat in Path("/proc/self/task").glob("*/schedstat"):
        try:
            fields = stat.read_text().split()
        except OSError:  # the thread ended
            continue
        run, wait = run + int(fields[0]), wait + int(fields[1])
    return run, wait


class ContentionWatch:
    """Warn once when this process spends more time waiting for a CPU than running (other busy processes).

    A daemon thread reads ``/proc/self/task/*/schedstat`` every ``interval`` seconds; when, over one
    interval, the threads waited runnable for a CPU at least as long as they ran (the work would take
    twice as long or more than on an idle machine), it logs one warning naming the slow-down and the
    load average, then stops. Does nothing where schedstat is missing (not Linux). Use as a context
    manager around the work.

    Parameters
    ----------
    interval : float
        Seconds per measurement window.
    """

    def __init__(self, interval: float = CONTENTION_INTERVAL) -> None:
        self.interval = interval
        self.slowdown: float | None = None  # (run + wait) / run of the window that warned
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="equidmri-contention", daemon=True)

    def __enter__(self) -> ContentionWatch:
        if Path("/proc/self/task").is_dir():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        before = _cpu_times_ns()
        while not self._stop.wait(self.interval):
            now = _cpu_times_ns()
            run, wait = now[0] - before[0], now[1] - before[1]
            before = now
            if run >= CONTENTION_MIN_BUSY * self.interval * 1e9 and wait >= run:
                self.slowdown = (run + wait) / run
                logger.warning(
                    "this run waited for a CPU %.0f%% of the last %.0f s (load average %.1f on %d CPUs): the CPUs "
                    "are oversubscribed (other busy processes, or more threads than CPUs), and the run may take "
                    "%.1fx as long as on an idle machine",
                    100 * wait / (run + wait),
                    self.interval,
                    os.getloadavg()[0],
                    available_cpus(),
                    self.slowdown,
                )
                return
