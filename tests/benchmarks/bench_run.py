"""Run ``equidmri bench`` with tiny settings in a subprocess and read back what it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_bench(name: str, args: list[str], out: Path) -> tuple[dict[str, Any], str, str]:
    """``equidmri bench <name> <args> --out OUT/results``, run from the empty folder ``out`` (so that nothing is
    read from the repository and the results folder must be created): ``(json, markdown, stdout)``."""
    assert not any(out.iterdir()), f"{out} must be empty"
    results = out / "results"
    done = subprocess.run(
        [sys.executable, "-m", "equidmri.cli.main", "bench", name, *args, "--out", "results"],
        capture_output=True,
        text=True,
        check=False,
        cwd=out,
    )
    assert done.returncode == 0, done.stderr
    (json_path,) = results.glob("*.json")
    return json.loads(json_path.read_text()), json_path.with_suffix(".md").read_text(), done.stdout
