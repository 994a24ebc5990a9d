"""What the opt-in spatial term of the refinement (`--refine-tv 1e-4`) costs on bench pretrained's
whole-brain-sized volume: `equidmri deconv` with the shipped single-shell model as it runs by default and with
`--refine-tv 1e-4`, one fresh process each, in turn, `--threads 2`, `REPEATS` times. Run from the repository root:
`python docs/results/pretrained_multishell/tv_speed.py docs/results/pretrained_multishell/tv_speed.json`.
"""

import json
import statistics
import sys
import tempfile
from pathlib import Path

from equidmri.bench.machine import machine_info
from equidmri.bench.pretrained import _child, deconv_code, write_speed_volume

THREADS, REPEATS = 2, 2
with tempfile.TemporaryDirectory() as scratch:
    tmp = Path(scratch)
    brain = {k: str(v) for k, v in write_speed_volume(tmp / "brain", [100, 100, 60]).items()}
    bodies = {
        "equidmri deconv (pretrained, default)": deconv_code(brain, tmp / "out", THREADS),
        "equidmri deconv (pretrained, --refine-tv 1e-4)": deconv_code(
            brain, tmp / "out", THREADS, options=("--refine-tv", "1e-4")
        ),
    }
    runs = {name: [] for name in bodies}
    for _ in range(REPEATS):
        for name, body in bodies.items():
            runs[name].append(_child(body, THREADS))
results = {name: {"median_s": statistics.median(r["seconds"] for r in rs), "runs": rs} for name, rs in runs.items()}
record = {
    "command": " ".join(["python", *sys.argv]),
    "machine": machine_info(THREADS),  # git commit included
    "volume": "100x100x60x31 (b=0 + 30 directions of b=1000), ellipsoidal brain-shaped mask",
    "results": results,
}
Path(sys.argv[1]).write_text(json.dumps(record, indent=2) + "\n")
print(json.dumps({name: r["median_s"] for name, r in results.items()}, indent=2))
