"""Facts about the machine and the checkout that every benchmark records beside its numbers."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import equidmri

REPO = Path(__file__).resolve().parents[3]  # the checkout of an editable install


def git_commit() -> str | None:
    """``git describe --always --dirty`` of the repository, or None outside a checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def machine_info(threads: int, **extra: Any) -> dict[str, Any]:
    """CPU model, cores, threads, platform, Python/torch/equidmri versions and git commit, plus ``extra``."""
    import torch  # the version of the torch the benchmark ran; not for the parsers of `bench cli` and `bench threads`

    cpu_model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu_model = models[0] if models else cpu_model
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": cpu_model,
        "cores": cores,
        "threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "equidmri": equidmri.__version__,
        "git_commit": git_commit(),
        **extra,
    }
