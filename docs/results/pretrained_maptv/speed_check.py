"""The joblib speed target once more, interleaved: `equidmri deconv` with the shipped model as it runs by default
on bench pretrained's whole-brain-sized volume (b=0 + 30 directions) and dipy's rows of bench pretrained (CSD fit +
peaks, serial and `engine="joblib"` with 2 jobs), one fresh process each, in turn, `--threads 2`, `REPEATS` times,
so that a drift of the machine's speed reaches every row alike (bench pretrained times each row's runs in a row).
Run from the repository root: `python docs/results/pretrained_maptv/speed_check.py
docs/results/pretrained_maptv/speed_check.json`.
"""

import json
import sys
from pathlib import Path

from equidmri.bench.pretrained import CSD, deconv_code, median_results, time_on_speed_volume

THREADS, REPEATS = 2, 3
record = time_on_speed_volume(
    lambda paths, out: {
        "equidmri deconv (pretrained), end to end": deconv_code(paths, out, THREADS),
        f"dipy CSD fit + peaks (joblib, {THREADS} jobs)": CSD.format(
            **paths, engine=f"engine='joblib', n_jobs={THREADS}", jobs=THREADS
        ),
        "dipy CSD fit + peaks (serial)": CSD.format(**paths, engine="engine='serial'", jobs=1),
    },
    THREADS,
    REPEATS,
)
record["results"] = median_results(record.pop("runs"))
Path(sys.argv[1]).write_text(json.dumps(record, indent=2) + "\n")
print(json.dumps({name: r["median_s"] for name, r in record["results"].items()}, indent=2))
