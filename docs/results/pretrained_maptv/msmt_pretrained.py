"""The shipped models on MRtrix3's multi-shell test volume with and without the spatial term, scored as `equidmri
bench realdata` scores them (main peaks within 25° of MRtrix3's MSMT-CSD fODF in its clear-WM voxels, and its clear
crossings found): each shell selection a shipped model accepts, with `--refine-tv 0`, with the weight the rule
3e-5 x 29 / F gives for its F fitted volumes (what `deconv` applied to every model at `3ad2dfe`), and as `deconv`
runs it now. Run from the repository root: `python docs/results/pretrained_maptv/msmt_pretrained.py
test_data/dwi2fod/msmt docs/results/pretrained_maptv/msmt_pretrained.json`.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

from equidmri.bench.machine import machine_info
from equidmri.bench.realdata import CLEAR_WM, NPEAKS, PEAK_THRESHOLD, Row, folder_volume, score, select_shell
from equidmri.dmri.io import load_dwi, load_fod
from equidmri.dmri.peaks import find_peaks
from equidmri.recon.pipeline import prepare
from equidmri.recon.pretrained import load_pretrained, out_of_range, recipe_for
from equidmri.recon.refine import scaled_tv

folder, out = Path(sys.argv[1]), Path(sys.argv[2])
with tempfile.TemporaryDirectory() as scratch:
    volume = folder_volume("mrtrix_msmt", folder, Path(scratch))
    data = load_dwi(volume.dwi, volume.bvals, volume.bvecs, volume.mask)
    reference_sh, _ = load_fod(volume.reference)
everything = prepare(data)
selections = {f"b={b:.0f}": prepare(select_shell(data, b)) for b in everything.shells.bvals}
selections["all"] = everything
mask = everything.mask
ref = find_peaks(reference_sh[..., :45], mask, relative_peak_threshold=PEAK_THRESHOLD, npeaks=NPEAKS)
clear = mask & (ref[1][..., 0] > CLEAR_WM * ref[1][..., 0][mask].max())
rows = []
for shells, prepared in selections.items():
    if out_of_range(prepared.shells) is not None:
        continue
    model = load_pretrained(prepared.gtab, prepared.responses)
    fitted = len(model.refiner.fitted_volumes)
    scaled = scaled_tv(fitted)
    for label, tv in (("--refine-tv 0", 0.0), (f"3e-5 x 29 / {fitted} = {scaled:g}", scaled), ("default", None)):
        start = time.perf_counter()
        fit = model.predict(prepared.data.dwi, prepared.mask, refine_tv=tv)
        row = Row(f"{recipe_for(prepared.shells).name}, {label}", shells, fit.shm_coeff, time.perf_counter() - start)
        rows.append({**score(row, ref, clear), "refine_tv": fit.refinement["tv"]})
        main, crossings = rows[-1]["within_cone_pct"], rows[-1]["crossings_found_pct"]
        print(f"{shells:7s} {row.method:45s} {main:.1f} % {crossings:.1f} %")
record = {"command": " ".join(["python", *sys.argv]), "machine": machine_info(2), "rows": rows}
out.write_text(json.dumps(record, indent=2) + "\n")
