"""One back-to-back speed check of the per-voxel refinement (issue #23) on bench pretrained's whole-brain-sized
volume: `equidmri deconv` with the shipped model at the default refinement, with `--refine-steps 0`, and dipy CSD
fit + peaks (serial), one fresh process each, `--threads 2`. Run from the repository root:
`python docs/results/pretrained_refined/speed_check.py docs/results/pretrained_refined/speed_check.json`.
The full speed section (medians of 3, joblib, HCP memory) is `equidmri bench pretrained --sections speed`.
"""

import json
import sys
import tempfile
from pathlib import Path

from equidmri.bench.machine import machine_info
from equidmri.bench.pretrained import CSD, _child, deconv_code, write_speed_volume

THREADS = 2
with tempfile.TemporaryDirectory() as scratch:
    tmp = Path(scratch)
    brain = {k: str(v) for k, v in write_speed_volume(tmp / "brain", [100, 100, 60]).items()}
    bodies = {
        "equidmri deconv (pretrained, default refinement)": deconv_code(brain, tmp / "out", THREADS),
        "equidmri deconv (pretrained, --refine-steps 0)": deconv_code(
            brain, tmp / "out", THREADS, options=("--refine-steps", "0")
        ),
        "dipy CSD fit + peaks (serial)": CSD.format(**brain, engine="engine='serial'", jobs=1),
    }
    results = {name: _child(body, THREADS) for name, body in bodies.items()}
record = {
    "command": " ".join(["python", *sys.argv]),
    "machine": machine_info(THREADS),  # git commit included
    "volume": "100x100x60x31 (b=0 + 30 directions of b=1000), ellipsoidal brain-shaped mask",
    "results": results,
}
Path(sys.argv[1]).write_text(json.dumps(record, indent=2) + "\n")
print(json.dumps(results, indent=2))
