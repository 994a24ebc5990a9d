"""``equidmri bench pretrained``: the shipped pretrained SHD-TV model against dipy CSD (see its parser module)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from equidmri.bench.machine import machine_info
from equidmri.bench.options.pretrained import DEFAULTS, QUICK, SECTIONS
from equidmri.bench.pretrained_multishell import mean_score, multishell, multishell_lines
from equidmri.bench.report import THREAD_ENV, check_report_outputs, header_lines, start_record, write_report
from equidmri.data import load_real_volume
from equidmri.dmri.baselines import fit_csd, fit_dti_fa
from equidmri.dmri.gradients import B0_THRESHOLD, find_shells, make_gtab
from equidmri.dmri.io import save_nifti
from equidmri.dmri.peaks import find_peaks
from equidmri.dmri.response import estimate_responses
from equidmri.eval.agreement import main_peak_agreement
from equidmri.eval.metrics import score_thresholds
from equidmri.recon.config import REFINE_TV
from equidmri.recon.model import FODFFit, SHDModel
from equidmri.recon.pipeline import prepare
from equidmri.recon.pretrained import MULTI_SHELL, load_pretrained, pretrained_path
from equidmri.sims.dataset import phantom_affine, save_gradients
from equidmri.sims.phantoms import make_phantom
from equidmri.sims.synthesis import low_resolution, make_protocol

TEST_SEED = 918_273  # phantoms of this bench: a seed the training (numpy streams [seed, rank, epoch]) never drew
LOW_DIRECTIONS = 29
GENERALISATION_SHELL = 2500.0  # s/mm²: a second test shell, read at GENERALISATION_DIRECTIONS (reported, no target)
GENERALISATION_DIRECTIONS = 45
NPEAKS = 3
PEAK_FLOOR = 0.05  # peaks are searched down to this relative amplitude; the scoring thresholds start above it
FA_THRESHOLD = 0.4
CONE_DEG = 25.0
SPEED_DIRECTIONS = 30
OURS_SPEED = "equidmri deconv (pretrained), end to end"  # section 3's row of ours
BRAIN_SEMI_AXES = 0.45  # of each edge: the ellipsoidal brain-shaped mask of the speed volume
HCP_SHAPE = (145, 174, 145, 288)
OURS = "pretrained SHD-TV"  # deconv's default: the shipped model, refined with the spatial term


def other_name(tv: float) -> str:
    """The name of the rows of ours with ``--refine-tv tv``, beside deconv's default (:data:`OURS`)."""
    return f"{OURS}, --refine-tv {tv:g}"


class Refined(NamedTuple):
    """One prediction of :func:`default_and_other`: the spatial term's weight applied, the fit, its seconds."""

    tv: float
    fit: FODFFit
    seconds: float


def default_and_other(model: SHDModel, dwi: np.ndarray, mask: np.ndarray, **options: Any) -> tuple[Refined, Refined]:
    """``model.predict(dwi, mask, **options)`` as deconv runs it
    (:meth:`~equidmri.recon.refine.FODFRefiner.default_tv`: with the WM alone the spatial term, its weight scaled to
    the fitted volumes), then with the other choice of ``--refine-tv``: 0 where the default applied the term, else
    :data:`~equidmri.recon.config.REFINE_TV`."""
    start = time.perf_counter()
    fit = model.predict(dwi, mask, **options)
    default = Refined(fit.refinement["tv"], fit, time.perf_counter() - start)
    tv = 0.0 if default.tv else REFINE_TV
    start = time.perf_counter()
    fit = model.predict(dwi, mask, refine_tv=tv, **options)
    return default, Refined(tv, fit, time.perf_counter() - start)


def _peaks(sh: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return find_peaks(sh, mask, relative_peak_threshold=PEAK_FLOOR, npeaks=NPEAKS)


def _score(peaks: tuple[np.ndarray, np.ndarray], gt_dirs: np.ndarray, voxels: np.ndarray) -> dict[str, float]:
    scores = score_thresholds(gt_dirs[voxels], peaks[0][voxels], peaks[1][voxels], cone_deg=CONE_DEG)
    best = scores["best"]
    return {"f1": best["f1"], "angle_deg": best["angle_deg"], "threshold": best["threshold"]}


def _compare(phantom, protocol, volumes, voxels, model_path, index, resolution) -> list[dict[str, Any]]:
    """Rows of the pretrained model and dipy CSD lmax 6 and 8 on the ``volumes`` of one phantom."""
    dwi = phantom.dwi[..., volumes]
    gtab = make_gtab(protocol.bvals[volumes], protocol.bvecs[volumes])
    responses = estimate_responses(dwi, gtab, phantom.mask, find_shells(gtab.bvals))
    model = load_pretrained(gtab, responses, model_path)
    default, other = default_and_other(model, dwi, phantom.mask)
    results = {OURS: (default.fit.sh(8), default.seconds), other_name(other.tv): (other.fit.sh(8), other.seconds)}
    applied = {OURS: default.tv, other_name(other.tv): other.tv}
    for lmax in (6, 8):
        start = time.perf_counter()
        sh = fit_csd(dwi, gtab, responses.dipy_wm_response(), phantom.mask, lmax=lmax)
        results[f"dipy CSD lmax {lmax}"] = (sh, time.perf_counter() - start)
    rows = []
    for method, (sh, seconds) in results.items():
        score = _score(_peaks(sh, phantom.mask), phantom.peak_dirs, voxels)
        rows.append(
            {
                "phantom": index,
                "resolution": resolution,
                "bval": float(protocol.bvals.max()),
                "directions": int((gtab.bvals > 0).sum()),
                "method": method,
                "refine_tv": applied.get(method),
                "seconds": round(seconds, 2),
                **score,
            }
        )
    return rows


def accuracy(settings: dict[str, Any], model_path: Path) -> list[dict[str, Any]]:
    """Section 1: per phantom and series, F1 and angular error of the pretrained model and dipy CSD 6/8: b=1000 at
    29 and 90 directions (the targets), and a b=2500 phantom at 45 directions (generalisation, reported)."""
    rows = []
    for index in range(settings["phantoms"]):
        for shell, series in ((1000.0, ("low", "high")), (GENERALISATION_SHELL, ("other",))):
            rng = np.random.default_rng([TEST_SEED, index, int(shell)])
            protocol = make_protocol(rng, shells=(shell,))
            phantom = make_phantom(settings["phantom_size"], protocol, rng)
            voxels = phantom.mask & (phantom.peak_fractions[..., 0] > 0)
            for resolution in series:
                if resolution == "high":
                    volumes = np.arange(protocol.bvals.size)
                else:
                    n = LOW_DIRECTIONS if resolution == "low" else GENERALISATION_DIRECTIONS
                    volumes = low_resolution(protocol, rng, n)
                rows += _compare(phantom, protocol, volumes, voxels, model_path, index, resolution)
    return rows


def small64d(model_path: Path, draws: int) -> dict[str, Any]:
    """Section 2: main peaks of the pretrained model within 25° of dipy CSD lmax 8 on small_64D (FA > 0.4), as
    ``deconv`` runs it and with the other choice of ``--refine-tv`` (:func:`default_and_other`); then the volume
    read at 29 of its 64 directions (``draws`` random draws) against CSD lmax 8 on all 64, for ours (both choices)
    and CSD lmax 6/8 on the subset."""
    prepared = prepare(load_real_volume("small_64D"))
    dwi, mask, gtab = prepared.data.dwi, prepared.mask, prepared.gtab
    csd = fit_csd(dwi, gtab, prepared.responses.dipy_wm_response(), mask, lmax=8)
    fa = fit_dti_fa(dwi, gtab, mask)
    voxels, reference = mask & (fa > FA_THRESHOLD), find_peaks(csd, mask)[0]
    model = load_pretrained(gtab, prepared.responses, model_path)
    default, other = default_and_other(model, dwi, mask)
    record = {"mask_voxels": int(mask.sum()), **main_peak_agreement(default.fit.peaks()[0], reference, voxels)}
    record["refine_tv"] = default.tv
    record["other"] = {"refine_tv": other.tv, **main_peak_agreement(other.fit.peaks()[0], reference, voxels)}
    bvals, bvecs = np.asarray(gtab.bvals), np.asarray(gtab.bvecs)
    b0, weighted = np.flatnonzero(bvals <= B0_THRESHOLD), np.flatnonzero(bvals > B0_THRESHOLD)
    subset: dict[str, list[float]] = {}
    for draw in range(draws):
        rng = np.random.default_rng([TEST_SEED, draw, 64])
        volumes = np.sort(np.concatenate([b0, rng.choice(weighted, LOW_DIRECTIONS, replace=False)]))
        sub_dwi, sub_gtab = dwi[..., volumes], make_gtab(bvals[volumes], bvecs[volumes])
        responses = estimate_responses(sub_dwi, sub_gtab, mask, find_shells(sub_gtab.bvals))
        model = load_pretrained(sub_gtab, responses, model_path)
        default, other = default_and_other(model, sub_dwi, mask)
        fits = {OURS: default.fit.fodf_sh, other_name(other.tv): other.fit.fodf_sh}
        subset_tv = default.tv
        for lmax in (6, 8):
            fits[f"dipy CSD lmax {lmax}"] = fit_csd(sub_dwi, sub_gtab, responses.dipy_wm_response(), mask, lmax=lmax)
        for name, sh in fits.items():
            agreement = main_peak_agreement(find_peaks(sh, voxels)[0], reference, voxels)
            subset.setdefault(name, []).append(agreement["fraction_within_cone"])
    record["subset"] = {"directions": LOW_DIRECTIONS, "draws": draws, "refine_tv": subset_tv, "within_cone": subset}
    return record


def write_speed_volume(
    folder: Path, shape: list[int], seed: int = TEST_SEED, directions: int = SPEED_DIRECTIONS, *, gzip: bool = True
) -> dict[str, Path]:
    """A phantom (b=0 + ``directions`` of b=1000) tiled to ``shape`` with an ellipsoidal brain-shaped mask.

    Built slab by slab in float32, so that an HCP-sized grid needs about one copy of the volume; ``gzip=False``
    writes an uncompressed ``dwi.nii`` (fast to write and read at that size).
    """
    rng = np.random.default_rng([seed, 99])
    protocol = make_protocol(rng, n_b0=1, shells=(1000.0,), directions_per_shell=directions)
    tile = make_phantom(min(40, max(shape)), protocol, rng)
    block = np.where(tile.mask[..., None], tile.dwi, tile.dwi[tile.mask].mean(0)).astype(np.float32)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), -1)
    centre, axes = (np.array(shape) - 1) / 2, BRAIN_SEMI_AXES * np.array(shape)
    mask = (((grid - centre) / axes) ** 2).sum(-1) <= 1.0
    del grid
    dwi = np.empty((*shape, block.shape[-1]), dtype=np.float32)
    for x in range(shape[0]):  # one slab at a time: the tiled phantom inside the mask, Rayleigh noise outside
        reps = [int(np.ceil(n / b)) for n, b in zip(shape[1:], block.shape[1:3])]
        slab = np.tile(block[x % block.shape[0]], reps + [1])[: shape[1], : shape[2]]
        noise = np.hypot(*rng.standard_normal((2, *slab.shape), dtype=np.float32)) * np.float32(2.0)
        dwi[x] = np.where(mask[x][..., None], slab, noise)
    affine = phantom_affine(max(shape))
    paths = {
        "dwi": folder / ("dwi.nii.gz" if gzip else "dwi.nii"),
        "bvals": folder / "bvals",
        "bvecs": folder / "bvecs",
        "mask": folder / "mask.nii.gz",
    }
    folder.mkdir(parents=True, exist_ok=True)
    save_nifti(paths["dwi"], dwi, affine)
    save_nifti(paths["mask"], mask.astype(np.uint8), affine)
    save_gradients(folder, "", protocol, affine, force=True)
    return paths


CHILD = """
import json, resource, sys, time
start = time.perf_counter()
{body}
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": time.perf_counter() - start, "peak_rss_mib": rss}}))
"""
DECONV = """
from equidmri.cli.main import main
code = main(["deconv", "--dwi", {dwi!r}, "--bvals", {bvals!r}, "--bvecs", {bvecs!r}, "--mask", {mask!r},
             "--out", {out!r}, "--force", "--threads", "{threads}", "--device", {device!r}, "-q", *{options!r}])
assert code == 0, code
"""
CSD = """
import numpy as np
from equidmri.dmri.io import load_dwi
from equidmri.recon.pipeline import prepare
from dipy.reconst.csdeconv import ConstrainedSphericalDeconvModel
from equidmri.dmri.peaks import find_peaks
from dipy.reconst.shm import convert_sh_from_legacy
prepared = prepare(load_dwi({dwi!r}, {bvals!r}, {bvecs!r}, {mask!r}))
start = time.perf_counter()
model = ConstrainedSphericalDeconvModel(prepared.gtab, prepared.responses.dipy_wm_response(), sh_order_max=8)
sh = model.fit(prepared.data.dwi, mask=prepared.mask, {engine}).shm_coeff
find_peaks(np.asarray(convert_sh_from_legacy(sh, "descoteaux07")), prepared.mask, jobs={jobs})
"""


def deconv_code(
    paths: dict[str, str], out: Path, threads: int, device: str = "cpu", options: tuple[str, ...] = ()
) -> str:
    """The code of a measured ``deconv`` of ``paths`` (``dwi``, ``bvals``, ``bvecs``, ``mask``) with extra
    command-line ``options`` (for :func:`_child`)."""
    return DECONV.format(**paths, out=str(out), threads=threads, device=device, options=list(options))


def time_on_speed_volume(
    make_bodies: Callable[[dict[str, str], Path], dict[str, str]], threads: int, repeats: int = 1
) -> dict[str, Any]:
    """A speed check beside section 3 (the scripts under ``docs/results/``): the codes ``make_bodies(paths, out)``
    gives (name -> code, e.g. :func:`deconv_code`) each run in a fresh process, in turn, ``repeats`` times, on the
    whole-brain-sized volume of :data:`DEFAULTS` written to a temporary folder.

    Returns the record the scripts write: ``command`` (``python`` and ``sys.argv``), ``machine``, ``volume`` and
    ``runs`` (name -> list of ``{"seconds", "peak_rss_mib"}``).
    """
    shape = DEFAULTS["brain_shape"]
    with tempfile.TemporaryDirectory(prefix="equidmri-speed-check-") as scratch:
        tmp = Path(scratch)
        paths = {k: str(v) for k, v in write_speed_volume(tmp / "brain", shape).items()}
        runs = interleaved_runs(make_bodies(paths, tmp / "out"), threads, repeats)
    return {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine_info(threads),  # git commit included
        "volume": f"{'x'.join(map(str, shape))}x{SPEED_DIRECTIONS + 1} (b=0 + {SPEED_DIRECTIONS} directions of "
        "b=1000), ellipsoidal brain-shaped mask",
        "runs": runs,
    }


def interleaved_runs(bodies: dict[str, str], threads: int, repeats: int) -> dict[str, list[dict[str, float]]]:
    """Each code of ``bodies`` (name -> code) in a fresh process, all in turn, ``repeats`` rounds: a drift of the
    machine's speed then reaches every name alike, and round i's runs sit side by side. Returns name -> the
    rounds' ``{"seconds", "peak_rss_mib"}``."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in bodies}
    for _ in range(repeats):
        for name, body in bodies.items():
            runs[name].append(_child(body, threads))
    return runs


def median_results(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """:func:`time_on_speed_volume`'s ``runs`` as its scripts record them: name -> ``median_s`` and ``runs``."""
    return {name: {"median_s": statistics.median(r["seconds"] for r in rs), "runs": rs} for name, rs in runs.items()}


def _child(body: str, threads: int) -> dict[str, float]:
    env = {**os.environ, **{name: str(threads) for name in THREAD_ENV}}
    code = CHILD.format(body=body)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"a measured process failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def speed(settings: dict[str, Any], threads: int, device: str, tmp: Path) -> dict[str, Any]:
    """Section 3: ``deconv`` end to end vs dipy CSD fit + peaks (serial, joblib), time and peak RSS."""
    cases: dict[str, Any] = {}
    brain = {k: str(v) for k, v in write_speed_volume(tmp / "brain_shape", settings["brain_shape"]).items()}
    bodies = {
        OURS_SPEED: deconv_code(brain, tmp / "out", threads, device),
        "dipy CSD fit + peaks (serial)": CSD.format(**brain, engine="engine='serial'", jobs=1),
        f"dipy CSD fit + peaks (joblib, {threads} jobs)": CSD.format(
            **brain, engine=f"engine='joblib', n_jobs={threads}", jobs=threads
        ),
    }
    runs = interleaved_runs(bodies, threads, settings["repeats"])
    ours = [r["seconds"] for r in runs[OURS_SPEED]]
    for name, rounds in runs.items():
        seconds = [r["seconds"] for r in rounds]
        cases[name] = {
            "seconds": seconds,
            "median_s": statistics.median(seconds),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rounds),
        }
        if name != OURS_SPEED:  # its time over ours in the same round
            cases[name]["round_ratios"] = [theirs / mine for theirs, mine in zip(seconds, ours)]
    hcp = hcp_memory(settings, threads, device, tmp)
    return {"volumes": {"brain_shape": _volume_counts(brain)}, "cases": cases, "hcp": hcp}


def _volume_counts(paths: dict[str, str]) -> dict[str, Any]:
    import nibabel as nib

    return {
        "shape": list(nib.load(paths["dwi"]).shape),
        "mask_voxels": int(np.asarray(nib.load(paths["mask"]).dataobj).sum()),
    }


def hcp_memory(settings: dict[str, Any], threads: int, device: str, tmp: Path) -> dict[str, Any]:
    """Peak RSS of ``deconv`` on the HCP grid (145×174×145) at two direction counts, extrapolated to 288 volumes.

    The shipped model accepts at most 150 directions, so the HCP grid is measured with b=0 + 30 and b=0 +
    150 (``SINGLE_SHELL.directions``; uncompressed NIfTI), both as ``deconv`` runs them by default (the spatial
    term over the whole mask); memory grows linearly with the volumes (the DWI, its normalised copy and the
    refinement's fitted signal), so the line through the two measurements is read at ``HCP_SHAPE[-1]`` volumes.
    """
    runs = []
    for directions in settings["hcp_directions"]:
        folder = tmp / f"hcp_{directions}"
        paths = {k: str(v) for k, v in write_speed_volume(folder, settings["hcp_grid"], directions=directions,
                                                          gzip=False).items()}  # fmt: skip
        code = deconv_code(paths, folder / "out", threads, device)
        runs.append({**_volume_counts(paths), "volumes": directions + 1, **_child(code, threads)})
        shutil.rmtree(folder)
    (a, b) = runs
    slope = (b["peak_rss_mib"] - a["peak_rss_mib"]) / (b["volumes"] - a["volumes"])  # MiB per volume
    return {
        "grid": settings["hcp_grid"],
        "runs": runs,
        "rss_slope_mib_per_volume": slope,
        "extrapolated_volumes": HCP_SHAPE[-1],
        "extrapolated_rss_mib": b["peak_rss_mib"] + slope * (HCP_SHAPE[-1] - b["volumes"]),
    }


def render_markdown(record: dict[str, Any]) -> str:
    """The page: the sections with the targets."""
    lines = header_lines("The shipped pretrained SHD-TV model against dipy CSD", record)
    lines += [f"Model: `{record['model']}` (SHA-256 `{record['model_sha256'][:12]}`).", ""]
    skipped = [name for name in SECTIONS if name not in record.get("sections", SECTIONS)]
    if skipped:
        lines += [f"Sections not run in this invocation: {', '.join(skipped)}.", ""]
    if "accuracy" in record:
        lines += _accuracy_lines(record)
    if "small64d" in record:
        lines += _real_lines(record)
    if "speed" in record:
        lines += _speed_lines(record)
    if "multishell" in record:
        lines += [
            f"Multi-shell model: `{record['multi_shell_model']}` (SHA-256 `{record['multi_shell_sha256'][:12]}`).",
            "",
        ]
        lines += multishell_lines(record["multishell"])
    return "\n".join(lines) + "\n"


def _accuracy_lines(record: dict[str, Any]) -> list[str]:
    lines = [
        "## 1. Phantoms never seen in training",
        "",
        "| phantom | series | method | F1 | angular error (°) | threshold | time (s) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in record["accuracy"]:
        lines.append(
            f"| {r['phantom']} | b={r['bval']:g}, {r['directions']} dirs | {r['method']} | {r['f1']:.3f} | "
            f"{r['angle_deg']:.2f} | {r['threshold']:.2f} | {r['seconds']:.1f} |"
        )
    lines += [
        "",
        "Targets (means over phantoms): low resolution, angular error ≤ 0.85 × the better CSD and F1 ≥ theirs; "
        "high resolution, not worse than CSD lmax 8.",
        "",
    ]
    for t in record["targets"]["accuracy"]:
        lines.append(f"- {t}")
    return lines + [""]


def _real_lines(record: dict[str, Any]) -> list[str]:
    s = record["small64d"]
    lines = [
        "## 2. Real data: dipy's small_64D",
        "",
        f"{s['n_voxels']} voxels with FA > {FA_THRESHOLD} of {s['mask_voxels']} mask voxels: "
        f"{100 * s['fraction_within_cone']:.1f} % of main peaks within {CONE_DEG:g}° of dipy CSD lmax 8 "
        f"(median {s['median_angle_deg']:.1f}°); target ≥ 85 %: "
        f"**{'met' if s['fraction_within_cone'] >= 0.85 else 'missed'}**.",
        "",
    ]
    if "other" in s:
        other, sub = s["other"], s["subset"]
        lines += [
            f"deconv's default here: `--refine-tv {s['refine_tv']:g}`. With `--refine-tv {other['refine_tv']:g}`: "
            f"{100 * other['fraction_within_cone']:.1f} % (median {other['median_angle_deg']:.1f}°).",
            "",
            f"Read at {sub['directions']} of its 64 directions ({sub['draws']} random draws), against dipy CSD "
            "lmax 8 on all 64 (main peaks within 25°, the same voxels; a real-data check of what the subset "
            f"loses; deconv's default, `{OURS}`, applies `--refine-tv {sub['refine_tv']:g}` here):",
            "",
            "| method on the subset | mean | draws |",
            "|---|---:|---|",
        ]
        for name, values in sub["within_cone"].items():
            lines.append(f"| {name} | {100 * np.mean(values):.1f} % | {', '.join(f'{100 * v:.1f}' for v in values)} |")
        lines.append("")
    return lines


def _speed_lines(record: dict[str, Any]) -> list[str]:
    lines = ["## 3. Speed and memory", ""]
    sp = record["speed"]
    v = sp["volumes"]["brain_shape"]
    lines += [
        f"Volume: {'×'.join(map(str, v['shape']))} (b=0 + {SPEED_DIRECTIONS} directions of b=1000), "
        f"{v['mask_voxels']} mask voxels; {record['settings']['repeats']} rounds, each running the cases in turn in "
        "fresh processes, so that a drift of the machine's speed reaches every row alike; a ratio per round compares "
        "runs that sat side by side.",
        "dipy's rows time its CSD fit and the peak search of its fODFs (dipy's `peak_directions` through "
        "`equidmri.dmri.peaks.find_peaks`, the sphere `deconv` uses), after loading and response estimation; "
        "the peak search runs in one process for the serial row and in as many joblib processes as the joblib row "
        "has jobs, as `deconv --threads N` runs its own. Peak RSS is the measured process's (not joblib's workers').",
        "",
        "| case | median s | runs (s) | peak RSS MiB |",
        "|---|---:|---|---:|",
    ]
    for name, c in sp["cases"].items():
        lines.append(
            f"| {name} | {c['median_s']:.1f} | {', '.join(f'{x:.1f}' for x in c['seconds'])} | "
            f"{c['peak_rss_mib']:.0f} |"
        )
    for t in record["targets"]["speed"]:
        lines.append(f"- {t}")
    return lines


def _targets(record: dict[str, Any]) -> dict[str, list[str]]:
    targets = {}
    if "accuracy" in record:
        targets["accuracy"] = _accuracy_targets(record["accuracy"])
    if "speed" in record:
        targets["speed"] = _speed_targets(record["speed"])
    return targets


def _accuracy_targets(rows: list[dict[str, Any]]) -> list[str]:
    """The targets on deconv's default (:data:`OURS`), then what the other choice of ``--refine-tv`` would give."""
    out = []
    for default in (True, False):
        for resolution in ("low", "high"):
            ours_rows = [r for r in rows if r["resolution"] == resolution and r.get("refine_tv") is not None]
            method = OURS if default else next(r["method"] for r in ours_rows if r["method"] != OURS)
            tv = next(r["refine_tv"] for r in ours_rows if r["method"] == method)
            tag = (
                f"default (`--refine-tv {tv:g}` here), "
                if default
                else f"`--refine-tv {tv:g}` (not the default here), "
            )
            ours = {k: mean_score(rows, method, resolution, k) for k in ("angle_deg", "f1")}
            csd = {
                l: {k: mean_score(rows, f"dipy CSD lmax {l}", resolution, k) for k in ("angle_deg", "f1")}
                for l in (6, 8)
            }
            if resolution == "low":
                best_angle = min(c["angle_deg"] for c in csd.values())
                best_f1 = max(c["f1"] for c in csd.values())
                ratio = ours["angle_deg"] / best_angle
                verdicts = (_verdict(ratio <= 0.85, default), _verdict(ours["f1"] >= best_f1, default))
                out.append(
                    f"{tag}low: angular error {ours['angle_deg']:.2f}° = {ratio:.2f} × the better CSD's "
                    f"{best_angle:.2f}° (target ≤ 0.85: {verdicts[0]}); F1 {ours['f1']:.3f} vs {best_f1:.3f} "
                    f"({verdicts[1]})"
                )
            else:
                c8 = csd[8]
                ok = ours["angle_deg"] <= c8["angle_deg"] and ours["f1"] >= c8["f1"]
                out.append(
                    f"{tag}high: angular error {ours['angle_deg']:.2f}° vs CSD lmax 8 {c8['angle_deg']:.2f}°, F1 "
                    f"{ours['f1']:.3f} vs {c8['f1']:.3f} ({_verdict(ok, default)})"
                )
    return out


def _verdict(ok: bool, default: bool) -> str:
    """**met**/**missed** for deconv's default (the targets); plain words for the other choice."""
    if default:
        return f"**{'met' if ok else 'missed'}**"
    return "would meet" if ok else "would miss"


def _speed_targets(speed_record: dict[str, Any]) -> list[str]:
    cases = speed_record["cases"]
    ours_s = cases[OURS_SPEED]["median_s"]
    speed = []
    for name, c in cases.items():
        if name.startswith("dipy"):
            rounds = ", ".join(f"{r:.2f}" for r in c["round_ratios"])
            speed.append(
                f"vs {name}: {ours_s:.1f} s against {c['median_s']:.1f} s, ratio {c['median_s'] / ours_s:.2f} "
                f"(target ≥ 1: **{'met' if c['median_s'] >= ours_s else 'missed'}**; per round {rounds}, "
                f"median {statistics.median(c['round_ratios']):.2f})"
            )
    rss = cases[OURS_SPEED]["peak_rss_mib"]
    speed.append(f"peak RSS of deconv {rss:.0f} MiB (target < 4096: **{'met' if rss < 4096 else 'missed'}**)")
    hcp = speed_record["hcp"]
    grid = "×".join(map(str, hcp["grid"]))
    measured = ", ".join(
        f"{r['volumes']} volumes {r['peak_rss_mib'] / 1024:.1f} GiB in {r['seconds']:.0f} s" for r in hcp["runs"]
    )
    bound = hcp["extrapolated_rss_mib"]
    speed.append(
        f"HCP-sized input {'×'.join(map(str, HCP_SHAPE))}: {bound / 1024:.1f} GiB — measured on the {grid} grid as "
        f"deconv runs it by default, the spatial term over the whole mask ({measured}; "
        f"{hcp['runs'][-1]['mask_voxels']} mask voxels) and extrapolated linearly in the volumes to "
        f"{hcp['extrapolated_volumes']} (target < 24 GiB: **{'met' if bound < 24 * 1024 else 'missed'}**)"
    )
    return speed


def run(args: argparse.Namespace) -> int:
    """Run the sections and write ``OUT/pretrained.json`` and ``.md``."""
    import hashlib

    check_report_outputs(args)
    settings = dict(QUICK if args.quick else DEFAULTS)
    model_path = Path(args.model) if args.model else pretrained_path()
    record = start_record(args)
    record["settings"] = settings
    record["model"] = str(args.model) if args.model else f"equidmri/models/{model_path.name} (shipped)"
    record["model_sha256"] = hashlib.sha256(model_path.read_bytes()).hexdigest()
    record["sections"] = list(args.sections)
    if "accuracy" in args.sections:
        record["accuracy"] = accuracy(settings, model_path)
    if "real" in args.sections:
        record["small64d"] = small64d(model_path, settings["subset_draws"])
    if "speed" in args.sections:
        with tempfile.TemporaryDirectory(prefix="equidmri-bench-pretrained-") as tmp:
            record["speed"] = speed(settings, args.threads, args.device, Path(tmp))
    if "multishell" in args.sections:
        ms_path = Path(args.multi_shell_model) if args.multi_shell_model else pretrained_path(MULTI_SHELL)
        shipped = f"equidmri/models/{ms_path.name} (shipped)"
        record["multi_shell_model"] = str(args.multi_shell_model) if args.multi_shell_model else shipped
        record["multi_shell_sha256"] = hashlib.sha256(ms_path.read_bytes()).hexdigest()
        record["multishell"] = multishell(
            settings, ms_path, TEST_SEED, lambda sh, ph, voxels: _score(_peaks(sh, ph.mask), ph.peak_dirs, voxels)
        )
    record["targets"] = _targets(record)
    write_report(args, record, render_markdown(record))
    return 0
