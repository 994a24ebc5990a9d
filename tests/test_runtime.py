"""Tests of equidmri.runtime: the glibc allocator settings, the threads default, the contention watch."""

import logging
import os
import subprocess
import sys
import time

import pytest

from equidmri import runtime
from equidmri.runtime import THREADS_ENV, ContentionWatch, available_cpus, default_threads, retain_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_retain_freed_memory_takes_effect_and_is_idempotent():
    assert retain_freed_memory() is True
    assert retain_freed_memory() is True


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"EQUIDMRI_THREADS": "3", "OMP_NUM_THREADS": "5"}, 3),
        ({"OMP_NUM_THREADS": "5"}, 5),
    ],
)
def test_default_threads_reads_the_environment_first(monkeypatch, env, expected):
    for name in THREADS_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert default_threads() == expected


def test_default_threads_without_environment_is_the_usable_cpus(monkeypatch):
    for name in THREADS_ENV:
        monkeypatch.delenv(name, raising=False)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= default_threads() == available_cpus() <= usable


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_default_threads_rejects_a_bad_environment_value(monkeypatch, value):
    monkeypatch.setenv("EQUIDMRI_THREADS", value)
    with pytest.raises(ValueError, match=f"EQUIDMRI_THREADS must be a positive integer, got '{value}'"):
        default_threads()


def test_set_passive_wait_keeps_a_users_policy_and_sets_passive_before_torch():
    code = (
        "import os, sys; from equidmri.runtime import set_passive_wait; "
        "print(set_passive_wait(), os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    )

    def run(**policy):
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | policy
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        ).stdout.split()

    assert run() == ["True", "PASSIVE", "False"]
    assert run(OMP_WAIT_POLICY="ACTIVE") == ["False", "ACTIVE", "False"]


def test_contention_watch_warns_once_when_waiting_as_long_as_running(monkeypatch, caplog):
    ms = 1_000_000  # ns; windows of 10 ms in which the process ran 10 ms and waited 5, 20, 35, 40 ms
    times = iter([(0, 0), (10 * ms, 5 * ms), (20 * ms, 25 * ms), (30 * ms, 60 * ms), (40 * ms, 100 * ms)])
    monkeypatch.setattr(runtime, "_cpu_times_ns", lambda: next(times, (40 * ms, 100 * ms)))
    with caplog.at_level(logging.WARNING, logger="equidmri.runtime"), ContentionWatch(interval=0.01) as watch:
        deadline = time.monotonic() + 5.0
        while watch.slowdown is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
    assert watch.slowdown == pytest.approx(3.0)  # the first window with wait >= run: (10 + 20) / 10
    assert len(caplog.records) == 1 and "waited for a CPU 67%" in caplog.records[0].getMessage()


def test_contention_watch_ignores_a_process_that_hardly_runs(monkeypatch, caplog):
    ms = 1_000_000  # ns; windows of 10 ms: 1 ms run (a parent waiting for its children), 9 ms waited
    clock = iter((ms * k, 9 * ms * k) for k in range(1000))
    monkeypatch.setattr(runtime, "_cpu_times_ns", lambda: next(clock))
    with caplog.at_level(logging.WARNING, logger="equidmri.runtime"), ContentionWatch(interval=0.01) as watch:
        time.sleep(0.2)
    assert watch.slowdown is None and not caplog.records


def test_on_threads_keeps_the_order_the_modes_and_the_thread_count():
    import torch

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)

        def work(i):
            return i, torch.get_num_threads(), torch.is_inference_mode_enabled(), torch.ones(1).is_inference()

        with torch.inference_mode():
            results = runtime.on_threads(work, range(7))
        assert torch.get_num_threads() == 2
        with torch.no_grad():
            assert runtime.on_threads(lambda i: torch.is_grad_enabled(), range(3)) == [False] * 3
    finally:
        torch.set_num_threads(threads)
    assert results == [(i, 1, True, True) for i in range(7)]


@pytest.mark.parametrize("threads", [1, 2])
def test_matmul_in_on_threads_work_uses_single_threaded_numpy_blas_and_equals_torch(threads):
    import torch
    from threadpoolctl import threadpool_info

    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 50, 7, generator=generator), torch.randn(3, 7, 5, generator=generator)
    wide = torch.empty(50, 14)  # each item writes its own columns (on_threads's work shares no output)
    before = torch.get_num_threads()

    def work(i):
        blas = {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
        product = runtime.matmul(a, b)  # broadcast batches
        columns = wide[:, 1 + 7 * i : 6 + 7 * i]
        runtime.matmul(a[i], b[i], out=columns)  # into a slice of columns
        return blas, product, columns

    try:
        torch.set_num_threads(threads)
        results = runtime.on_threads(work, [0, 1])
    finally:
        torch.set_num_threads(before)
    for i, (blas, product, columns) in enumerate(results):
        assert blas == {1}
        torch.testing.assert_close(product, a @ b)
        torch.testing.assert_close(columns, a[i] @ b[i])


def test_matmul_leaves_autograd_and_other_dtypes_to_torch():
    import torch

    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(3, 2)

    def work(_):
        return runtime.matmul(a, b), runtime.matmul(
            torch.ones(2, 2, dtype=torch.int64), torch.ones(2, 2, dtype=torch.int64)
        )

    (product, integers), _ = runtime.on_threads(work, [0, 1])
    product.sum().backward()  # recorded by autograd: torch's product
    torch.testing.assert_close(a.grad, b.sum(1).expand(4, 3))
    assert integers.dtype == torch.int64 and integers.tolist() == [[2, 2], [2, 2]]


def test_product_dtype_is_bfloat16_on_auto_only_where_the_cpu_multiplies_it_natively(monkeypatch):
    import torch

    assert runtime.product_dtype("float32") == torch.float32
    assert runtime.product_dtype("bfloat16", "cuda") == torch.bfloat16
    for native in (False, True):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda native=native: native)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert runtime.product_dtype("auto") == (torch.bfloat16 if native else torch.float32)
        assert runtime.product_dtype("auto", "cuda") == torch.float32
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16, got 'half'"):
        runtime.product_dtype("half")
