"""What the opt-in spatial term of the refinement (`--refine-tv 1e-4`) costs on bench pretrained's
whole-brain-sized volume: `equidmri deconv` with the shipped single-shell model as it runs by default and with
`--refine-tv 1e-4`, one fresh process each, in turn, `--threads 2`, `REPEATS` times. Run from the repository root:
`python docs/results/pretrained_multishell/tv_speed.py docs/results/pretrained_multishell/tv_speed.json`.
"""

import json
import sys
from pathlib import Path

from equidmri.bench.pretrained import deconv_code, median_results, time_on_speed_volume

THREADS, REPEATS = 2, 2
record = time_on_speed_volume(
    lambda paths, out: {
        "equidmri deconv (pretrained, default)": deconv_code(paths, out, THREADS),
        "equidmri deconv (pretrained, --refine-tv 1e-4)": deconv_code(
            paths, out, THREADS, options=("--refine-tv", "1e-4")
        ),
    },
    THREADS,
    REPEATS,
)
record["results"] = median_results(record.pop("runs"))
Path(sys.argv[1]).write_text(json.dumps(record, indent=2) + "\n")
print(json.dumps({name: r["median_s"] for name, r in record["results"].items()}, indent=2))
