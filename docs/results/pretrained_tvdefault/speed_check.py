"""How much of `deconv`'s time on bench pretrained's whole-brain-sized volume (b=0 + 30 directions, so the default
adds the spatial term) is the spatial term, against dipy CSD fit + peaks with joblib, on this machine: `equidmri
deconv` with the shipped model as it runs by default and with `--refine-tv 0`, and dipy's row of bench pretrained
(`engine="joblib"`, 2 jobs), one fresh process each, in turn, `--threads 2`, `REPEATS` times. Run from the
repository root: `python docs/results/pretrained_tvdefault/speed_check.py
docs/results/pretrained_tvdefault/speed_check.json`.
"""

import json
import sys
from pathlib import Path

from equidmri.bench.pretrained import CSD, deconv_code, median_results, time_on_speed_volume

THREADS, REPEATS = 2, 2
record = time_on_speed_volume(
    lambda paths, out: {
        "equidmri deconv (pretrained, default: --refine-tv 3e-5 at 30 directions)": deconv_code(paths, out, THREADS),
        "equidmri deconv (pretrained, --refine-tv 0)": deconv_code(paths, out, THREADS, options=("--refine-tv", "0")),
        f"dipy CSD fit + peaks (joblib, {THREADS} jobs)": CSD.format(
            **paths, engine=f"engine='joblib', n_jobs={THREADS}", jobs=THREADS
        ),
    },
    THREADS,
    REPEATS,
)
record["results"] = median_results(record.pop("runs"))
Path(sys.argv[1]).write_text(json.dumps(record, indent=2) + "\n")
print(json.dumps({name: r["median_s"] for name, r in record["results"].items()}, indent=2))
