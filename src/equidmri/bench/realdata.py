"""``equidmri bench realdata``: fODF methods against a reference fODF on real volumes.

The volumes, the comparison and the options: :mod:`equidmri.bench.options.realdata`
(``equidmri bench realdata --help``).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from equidmri.bench.options.realdata import QUICK_EPOCHS
from equidmri.bench.report import check_report_outputs, fmt, header_lines, start_record, write_report
from equidmri.data import real_volume_paths
from equidmri.dmri.gradients import SHELL_TOL, find_shells
from equidmri.dmri.io import DWIData, load_dwi, load_fod
from equidmri.dmri.peaks import find_peaks
from equidmri.eval.agreement import CONE_DEG, main_peak_agreement, second_peak_recall
from equidmri.methods import find_method, get_method
from equidmri.recon.model import FODFFit, NetworkConfig
from equidmri.recon.pipeline import PreparedData, prepare
from equidmri.recon.train import TrainConfig

logger = logging.getLogger(__name__)

PEAK_THRESHOLD = 0.1  # relative peak amplitude kept (MRtrix sh2peaks keeps every peak up to its -num)
NPEAKS = 3  # MRtrix sh2peaks -num default
CLEAR_WM = 0.2  # a voxel has a clear WM fODF when its reference first peak exceeds this fraction of the maximum
CLEAR_CROSSING = 0.5  # a reference crossing is clear when its second peak is at least this fraction of the first
QUICK_NETWORK = NetworkConfig(widths=(4, 4, 4, 4))
REFERENCE_CSD = "CSD (lmax 8)"  # dipy's CSD (equidmri.methods): the reference where a volume has none
MRTRIX_LAYOUT = {"dwi.mif": "dwi.nii.gz", "mask.mif": "mask.nii.gz", "wm.mif": "reference_fod.nii.gz"}


@dataclass(frozen=True)
class Volume:
    """A real volume on disk and its optional reference fODF (``reference_fod.nii.gz``)."""

    name: str
    dwi: Path
    bvals: Path
    bvecs: Path
    mask: Path | None = None
    reference: Path | None = None


def dipy_volume(name: str) -> Volume:
    """One of dipy's bundled volumes (:data:`equidmri.data.REAL_VOLUMES`; its files ship in dipy's wheel)."""
    dwi, bvals, bvecs = real_volume_paths(name)
    return Volume(name=name, dwi=dwi, bvals=bvals, bvecs=bvecs)


def folder_volume(name: str, folder: Path, scratch: Path) -> Volume:
    """A ``--volume`` folder: NIfTI + FSL files, or the MRtrix3 layout converted into ``scratch``.

    Raises
    ------
    FileNotFoundError
        If the folder has neither layout, or needs ``mrconvert`` and MRtrix3 is not installed.
    """
    folder = Path(folder)
    if (folder / "dwi.mif").is_file() and not (folder / "dwi.nii.gz").is_file():
        if shutil.which("mrconvert") is None:
            raise FileNotFoundError(f"{folder} holds MRtrix3 .mif images: install MRtrix3 (mrconvert) to read them")
        target = scratch / name
        target.mkdir(parents=True)
        for source, converted in MRTRIX_LAYOUT.items():
            if (folder / source).is_file():
                extra = (
                    ["-export_grad_fsl", str(target / "dwi.bvec"), str(target / "dwi.bval")]
                    if source == "dwi.mif"
                    else []
                )
                subprocess.run(
                    ["mrconvert", "-quiet", str(folder / source), str(target / converted), *extra], check=True
                )
        folder = target
    paths = {key: folder / f"dwi.{key}" for key in ("bval", "bvec")}
    if not (folder / "dwi.nii.gz").is_file() or not all(p.is_file() for p in paths.values()):
        raise FileNotFoundError(f"{folder} needs dwi.nii.gz, dwi.bval and dwi.bvec (or dwi.mif)")
    optional = {key: folder / f"{key}.nii.gz" for key in ("mask", "reference_fod")}
    return Volume(
        name=name,
        dwi=folder / "dwi.nii.gz",
        bvals=paths["bval"],
        bvecs=paths["bvec"],
        mask=optional["mask"] if optional["mask"].is_file() else None,
        reference=optional["reference_fod"] if optional["reference_fod"].is_file() else None,
    )


def select_shell(data: DWIData, bval: float) -> DWIData:
    """The b=0 volumes and one shell (within ``SHELL_TOL`` s/mm² of ``bval``) of an acquisition."""
    keep = find_shells(data.bvals).index < 0
    keep |= np.abs(data.bvals - bval) <= SHELL_TOL
    return replace(data, dwi=data.dwi[..., keep], bvals=data.bvals[keep], bvecs=data.bvecs[keep])


@dataclass(frozen=True)
class Row:
    """One method on one selection of shells: its WM fODF (voxel frame, descoteaux07, lmax 8) and fractions."""

    method: str
    shells: str
    fodf_sh: np.ndarray
    seconds: float
    fractions: np.ndarray | None = None
    tissues: tuple[str, ...] = ()


def fit_method(name: str, prepared: PreparedData, **options: Any) -> FODFFit:
    """The registered method ``name`` (:mod:`equidmri.methods`) fitted to a prepared (sub-)acquisition with its
    responses."""
    return get_method(name, prepared.gtab, prepared.responses, **options).fit(prepared.data.dwi, prepared.mask)


def run_methods(prepared: PreparedData, shells: str, args: argparse.Namespace) -> list[Row]:
    """dipy CSD (single shell) or MSMT-CSD (several), MRtrix3's counterpart when installed (not with ``--quick``),
    then SHD-TV, on a prepared (sub-)acquisition."""
    rows = []
    multi = prepared.shells.bvals.size > 1
    classical = [("MSMT-CSD", "dipy MSMT-CSD (lmax 8)")] if multi else [(REFERENCE_CSD, "dipy CSD (lmax 8)")]
    mrtrix = "MRtrix3 MSMT-CSD" if multi else "MRtrix3 CSD"
    if not args.quick and find_method(mrtrix).available():
        classical.append((mrtrix, f"{mrtrix} (its own responses)"))
    for name, label in classical:
        if multi and args.quick:
            continue
        start = time.perf_counter()
        fodf = fit_method(name, prepared).shm_coeff
        rows.append(Row(label, shells, fodf, time.perf_counter() - start))
    start = time.perf_counter()
    epochs = QUICK_EPOCHS if args.quick else args.epochs
    fit = fit_method(
        "SHD-TV",
        prepared,
        network=QUICK_NETWORK if args.quick else NetworkConfig(),
        seed=args.seed,
        **({} if epochs is None else {"epochs": epochs}),
    )
    rows.append(
        Row("SHD-TV (equidmri)", shells, fit.shm_coeff, time.perf_counter() - start, fit.fractions, fit.tissues)
    )
    return rows


def score(row: Row, reference: tuple[np.ndarray, np.ndarray], clear: np.ndarray) -> dict[str, Any]:
    """Main-peak agreement and crossings found of one row against the reference peaks."""
    dirs, _ = find_peaks(row.fodf_sh, clear, relative_peak_threshold=PEAK_THRESHOLD, npeaks=NPEAKS)
    main = main_peak_agreement(reference[0], dirs, clear)
    crossings = second_peak_recall(*reference, dirs, clear, min_ratio=CLEAR_CROSSING)
    result = {
        "method": row.method,
        "shells": row.shells,
        "seconds": round(row.seconds, 2),
        "voxels": main["n_voxels"],
        "within_cone_pct": 100 * main["fraction_within_cone"],
        "median_angle_deg": main["median_angle_deg"],
        "crossings": crossings["n_crossings"],
        "crossings_found_pct": 100 * crossings["fraction_found"],
    }
    if row.fractions is not None:
        result["mean_fractions_clear_wm"] = dict(zip(row.tissues, row.fractions[clear].mean(axis=0).tolist()))
    return result


def evaluate_volume(volume: Volume, args: argparse.Namespace) -> dict[str, Any]:
    """Every method on every shell selection of one volume, scored against its reference."""
    data = load_dwi(volume.dwi, volume.bvals, volume.bvecs, volume.mask)
    prepared = prepare(data)
    shells = prepared.shells.bvals
    per_shell = {bval: prepare(select_shell(data, bval)) for bval in shells} if shells.size > 1 else {}
    if volume.reference is not None:
        ref_sh, _ = load_fod(volume.reference)
        reference_name = f"{volume.reference.name} (given)"
    else:  # dipy CSD on the highest shell
        top = per_shell.get(shells[-1], prepared)
        ref_sh = fit_method(REFERENCE_CSD, top).shm_coeff
        reference_name = f"dipy CSD (lmax 8), b={shells[-1]:.0f}"
    ref_dirs, ref_values = find_peaks(
        ref_sh[..., :45], prepared.mask, relative_peak_threshold=PEAK_THRESHOLD, npeaks=NPEAKS
    )
    first = ref_values[..., 0]
    clear = prepared.mask & (first > CLEAR_WM * first[prepared.mask].max())
    rows = []
    for bval, shell in per_shell.items():
        rows += run_methods(shell, f"b={bval:.0f}", args)
    rows += run_methods(prepared, "all" if shells.size > 1 else f"b={shells[0]:.0f}", args)
    record = {
        "volume": volume.name,
        "shape": list(data.dwi.shape),
        "shells": shells.round().tolist(),
        "mask_voxels": int(prepared.mask.sum()),
        "reference": reference_name,
        "clear_wm_voxels": int(clear.sum()),
        "rows": [score(row, (ref_dirs, ref_values), clear) for row in rows],
    }
    logger.info("%s: %d rows", volume.name, len(rows))
    return record


def _markdown(record: dict[str, Any]) -> str:
    lines = header_lines("Real data: fODF methods against a reference fODF", record)
    lines += [
        f"Voxels: the mask voxels whose reference first peak exceeds {CLEAR_WM} of the largest (clear WM); "
        f"crossings: those where the reference's second peak is at least {CLEAR_CROSSING} of its first. Peaks: "
        f"equidmri's `find_peaks` at lmax 8 (relative threshold {PEAK_THRESHOLD}, at most {NPEAKS} peaks) on "
        f"both sides; cone {CONE_DEG:.0f}°. SHD-TV: {record['settings']}.",
        "",
    ]
    for volume in record["volumes"]:
        lines += [
            f"## {volume['volume']}",
            "",
            f"{'×'.join(map(str, volume['shape'][:3]))} voxels, {volume['shape'][3]} volumes, shells "
            f"{volume['shells']} s/mm², {volume['mask_voxels']} mask voxels; reference: {volume['reference']}; "
            f"{volume['clear_wm_voxels']} clear WM voxels.",
            "",
            "| method | shells | main peak within 25° | median angle | reference crossings found | time (s) |",
            "|---|---|---|---|---|---|",
        ]
        for row in volume["rows"]:
            lines.append(
                f"| {row['method']} | {row['shells']} | {fmt(row['within_cone_pct'], '.1f')} % | "
                f"{fmt(row['median_angle_deg'], '.1f')}° | {fmt(row['crossings_found_pct'], '.1f')} % "
                f"(of {row['crossings']}) | {row['seconds']:.1f} |"
            )
        fractions = [
            row
            for row in volume["rows"]
            if "mean_fractions_clear_wm" in row and len(row["mean_fractions_clear_wm"]) > 1
        ]
        for row in fractions:
            mean = ", ".join(f"{t} {v:.2f}" for t, v in row["mean_fractions_clear_wm"].items())
            lines += ["", f"Mean tissue fractions of {row['method']} ({row['shells']}) in the clear WM voxels: {mean}."]
        lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    check_report_outputs(args)
    torch.set_num_threads(args.threads)
    record = start_record(args)
    record["settings"] = (
        f"{QUICK_EPOCHS} epochs, widths {list(QUICK_NETWORK.widths)} (--quick)"
        if args.quick
        else f"{args.epochs or TrainConfig().epochs} epochs, default network, seed {args.seed}"
    )
    with tempfile.TemporaryDirectory(prefix="equidmri-realdata-") as scratch:
        volumes = [dipy_volume("small_64D")]
        volumes += [folder_volume(name, Path(folder), Path(scratch)) for name, folder in args.volume]
        record["volumes"] = [evaluate_volume(volume, args) for volume in volumes]
    write_report(args, record, _markdown(record))
    return 0
