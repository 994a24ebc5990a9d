"""The shipped single-shell model on real low-angular-resolution series: each shell of MRtrix3's multi-shell test
volume (b=1200 with 30 directions, b=2800 with 50) read at 29 random directions of its own (4 draws), scored as
`equidmri bench realdata` scores (main peak within 25°, median angle, crossings found in its clear-WM voxels)
against MRtrix3's MSMT-CSD fODF on all the data (the test data's `wm.mif`). Rows: deconv's default (since the
commit after 2291213, with the spatial term `--refine-tv` 3e-5 at these 29 directions; before, without it), the
refinement without the spatial term (`--refine-tv 0`; the b=0 volumes left out of the fit with the WM alone, since
commit 84844d8), the same with the b=0 volumes fitted (the refinement before 84844d8), dipy CSD lmax 6 and 8 on
the same subsets (subsets.json: at 11d61c3, where the default was `--refine-tv 0` and a third row added 3e-5).
Needs MRtrix3's test data (github.com/MRtrix3/test_data, dwi2fod/msmt) and `mrconvert`. Run from the repository root:
`python docs/results/pretrained_dwfit/subsets.py DIR OUT.json`, DIR the test data's dwi2fod/msmt folder.
"""

import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from equidmri.bench.machine import machine_info
from equidmri.bench.realdata import CLEAR_WM, NPEAKS, PEAK_THRESHOLD, Row, folder_volume, score, select_shell
from equidmri.dmri.baselines import fit_csd
from equidmri.dmri.io import load_dwi, load_fod
from equidmri.dmri.peaks import find_peaks
from equidmri.recon.forward import wm_sh_operator
from equidmri.recon.pipeline import prepare
from equidmri.recon.pretrained import load_pretrained

DIRECTIONS, DRAWS, THREADS = 29, 4, 2
torch.set_num_threads(THREADS)


def fit_b0_too(model) -> None:
    """The refinement as it was before 84844d8: every volume, b=0 included, in the WM-only fit."""
    refiner = model.refiner
    refiner.fitted_volumes = torch.arange(model.input_shells.index.size)
    responses = model.responses.on_shells(model.input_shells.bvals) if model.super_resolution else model.responses
    zonal = responses.zonal(8)
    operator = wm_sh_operator(np.asarray(model.input_gtab.bvecs, dtype=np.float64), model.input_shells, zonal, 8)
    refiner.wm_operator = torch.tensor(operator, dtype=refiner.wm_operator.dtype)
    refiner.iso_signal = refiner.iso_signal.new_zeros(0, operator.shape[0])


with tempfile.TemporaryDirectory() as scratch:
    volume = folder_volume("mrtrix_msmt", Path(sys.argv[1]), Path(scratch))
    data = load_dwi(volume.dwi, volume.bvals, volume.bvecs, volume.mask)
    full = prepare(data)
    reference_sh, _ = load_fod(volume.reference)
dirs, values = find_peaks(reference_sh[..., :45], full.mask, relative_peak_threshold=PEAK_THRESHOLD, npeaks=NPEAKS)
clear = full.mask & (values[..., 0] > CLEAR_WM * values[..., 0][full.mask].max())
results = {}
for bval in (1200.0, 2800.0):
    shell = select_shell(data, bval)
    weighted, b0 = np.flatnonzero(shell.bvals > 50), np.flatnonzero(shell.bvals <= 50)
    for draw in range(DRAWS):
        rng = np.random.default_rng([draw, int(bval)])
        keep = np.sort(np.concatenate([b0, rng.choice(weighted, DIRECTIONS, replace=False)]))
        p = prepare(replace(shell, dwi=shell.dwi[..., keep], bvals=shell.bvals[keep], bvecs=shell.bvecs[keep]))
        model = load_pretrained(p.gtab, p.responses)
        fits = {"pretrained SHD-TV (default)": model.predict(p.data.dwi, p.mask).shm_coeff}
        fits["pretrained SHD-TV, --refine-tv 0"] = model.predict(p.data.dwi, p.mask, refine_tv=0.0).shm_coeff
        fit_b0_too(model)
        fits["pretrained SHD-TV, b=0 fitted (before 84844d8)"] = model.predict(
            p.data.dwi, p.mask, refine_tv=0.0
        ).shm_coeff
        response = p.responses.dipy_wm_response()
        for lmax in (6, 8):
            fits[f"dipy CSD lmax {lmax}"] = fit_csd(p.data.dwi, p.gtab, response, p.mask, lmax=lmax)
        for name, sh in fits.items():
            s = score(Row(name, f"b={bval:.0f}", sh, 0.0), (dirs, values), clear)
            results.setdefault(f"b={bval:.0f}", {}).setdefault(name, []).append(
                {k: s[k] for k in ("within_cone_pct", "median_angle_deg", "crossings_found_pct")}
            )
summary = {
    shell: {name: {k: float(np.mean([d[k] for d in draws])) for k in draws[0]} for name, draws in rows.items()}
    for shell, rows in results.items()
}
record = {
    "command": " ".join(["python", *sys.argv]),
    "machine": machine_info(THREADS),  # git commit included
    "volume": f"MRtrix3 test data dwi2fod/msmt, {int(clear.sum())} clear-WM voxels; reference: its wm.mif",
    "directions": DIRECTIONS,
    "draws": DRAWS,
    "mean_over_draws": summary,
    "per_draw": results,
}
Path(sys.argv[2]).write_text(json.dumps(record, indent=2) + "\n")
for shell, rows in summary.items():
    for name, s in rows.items():
        print(shell, name, {k: round(v, 1) for k, v in s.items()})
