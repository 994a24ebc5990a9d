"""Run ``equidmri bench`` with tiny settings in a subprocess and read back what it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

def run_bench(name: str, args: list[str], out: Path) -> tuple[dict[str, Any], str, str]:
    """``equidmri bench <name> <args> --json --markdown`` into ``out``: ``(json, markdown, stdout)``."""
    json_path, markdown_path = out / "result.json", out / "result.md"
    done = subprocess.run([sys.executable, "-m", "equidmri.cli.main", "bench", name, *args, "--json", str(json_path),
                           "--markdown", str(markdown_path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(json_path.read_text()), markdown_path.read_text(), done.stdout
