"""One back-to-back speed check of the per-voxel refinement (issue #23) on bench pretrained's whole-brain-sized
volume: `equidmri deconv` with the shipped model at the default refinement, with `--refine-steps 0`, and dipy CSD
fit + peaks (serial), one fresh process each, `--threads 2`. Run from the repository root:
`python docs/results/pretrained_refined/speed_check.py docs/results/pretrained_refined/speed_check.json`.
The full speed section (medians of 3, joblib, HCP memory) is `equidmri bench pretrained --sections speed`.
"""

import json
import sys
from pathlib import Path

from equidmri.bench.pretrained import CSD, deconv_code, time_on_speed_volume

THREADS = 2
record = time_on_speed_volume(
    lambda paths, out: {
        "equidmri deconv (pretrained, default refinement)": deconv_code(paths, out, THREADS),
        "equidmri deconv (pretrained, --refine-steps 0)": deconv_code(
            paths, out, THREADS, options=("--refine-steps", "0")
        ),
        "dipy CSD fit + peaks (serial)": CSD.format(**paths, engine="engine='serial'", jobs=1),
    },
    THREADS,
)
record["results"] = {name: run for name, (run,) in record.pop("runs").items()}
Path(sys.argv[1]).write_text(json.dumps(record, indent=2) + "\n")
print(json.dumps(record["results"], indent=2))
