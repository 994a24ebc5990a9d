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
import textwrap
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from equidmri.bench.options.realdata import QUICK_EPOCHS
from equidmri.bench.pretrained import default_and_other
from equidmri.bench.report import (
    check_report_outputs,
    fmt,
    header_lines,
    report_path,
    start_record,
    write_report,
)
from equidmri.data import real_volume_paths
from equidmri.dmri.gradients import SHELL_TOL, find_shells
from equidmri.dmri.io import DWIData, load_dwi, load_fod, load_nifti_volume
from equidmri.dmri.peaks import find_peaks
from equidmri.eval.agreement import CONE_DEG, main_peak_agreement, second_peak_recall
from equidmri.methods import find_method, get_method
from equidmri.recon.model import FODFFit, NetworkConfig
from equidmri.recon.pipeline import PreparedData, prepare
from equidmri.recon.pretrained import load_pretrained, out_of_range, recipe_for
from equidmri.recon.train import TrainConfig
from equidmri.viz.qc import plot_peaks_qc

logger = logging.getLogger(__name__)

PEAK_THRESHOLD = 0.1  # relative peak amplitude kept (MRtrix sh2peaks keeps every peak up to its -num)
NPEAKS = 3  # MRtrix sh2peaks -num default
CLEAR_WM = 0.2  # a voxel has a clear WM fODF when its reference first peak exceeds this fraction of the maximum
CLEAR_CROSSING = 0.5  # a reference crossing is clear when its second peak is at least this fraction of the first
QUICK_NETWORK = NetworkConfig(widths=(4, 4, 4, 4))
REFERENCE_CSD = "CSD (lmax 8)"  # dipy's CSD (equidmri.methods): the reference where a volume has none
SHD_NETWORK_ONLY = "SHD-TV, network only (equidmri, --refine-steps 0)"
SHD_DEFAULT = "SHD-TV (equidmri)"
SHD_PRETRAINED = "SHD-TV, shipped pretrained model (equidmri, no training on the volume)"
MRTRIX_LAYOUT = {
    "dwi.mif": "dwi.nii.gz",
    "mask.mif": "mask.nii.gz",
    "wm.mif": "reference_fod.nii.gz",
    "gm.mif": "reference_gm.nii.gz",  # msmt_csd's GM and CSF outputs: the reference's tissue classes
    "csf.mif": "reference_csf.nii.gz",
}
TISSUES = ("wm", "gm", "csf")
FOOTER_WIDTH = 110  # characters per line of the figure's command/commit/machine footer


@dataclass(frozen=True)
class Volume:
    """A real volume on disk and its optional reference fODF (``reference_fod.nii.gz``)."""

    name: str
    dwi: Path
    bvals: Path
    bvecs: Path
    mask: Path | None = None
    reference: Path | None = None
    reference_iso: tuple[Path, Path] | None = None  # the reference's GM and CSF maps (multi-tissue references)


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
    optional = {key: folder / f"{key}.nii.gz" for key in ("mask", "reference_fod", "reference_gm", "reference_csf")}
    iso = (optional["reference_gm"], optional["reference_csf"])
    return Volume(
        name=name,
        dwi=folder / "dwi.nii.gz",
        bvals=paths["bval"],
        bvecs=paths["bvec"],
        mask=optional["mask"] if optional["mask"].is_file() else None,
        reference=optional["reference_fod"] if optional["reference_fod"].is_file() else None,
        reference_iso=iso if all(p.is_file() for p in iso) else None,
    )


def reference_tissue(volume: Volume, reference_sh: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """Each mask voxel's dominant tissue in a multi-tissue reference (0 WM, 1 GM, 2 CSF; -1 outside the mask),
    or None without the reference's GM and CSF maps. WM is the reference fODF's integral, ``c_00 sqrt(4 pi)``."""
    if volume.reference_iso is None:
        return None
    maps = [reference_sh[..., 0] * np.sqrt(4 * np.pi)]
    maps += [load_nifti_volume(path, "reference tissue map")[0].reshape(mask.shape) for path in volume.reference_iso]
    dominant = np.argmax(np.stack(maps, axis=-1), axis=-1)
    return np.where(mask, dominant, -1)


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
    the shipped pretrained SHD-TV model where the acquisition is in a shipped model's range, then SHD-TV trained on
    the volume, on a prepared (sub-)acquisition."""
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
    if out_of_range(prepared.shells) is None:  # a shipped model applies: no training on the volume
        model, layout = load_pretrained(prepared.gtab, prepared.responses), recipe_for(prepared.shells).name
        default, other = default_and_other(model, prepared.data.dwi, prepared.mask, refine_steps=args.refine_steps)
        for label, (_, fit, seconds) in (
            (f"{SHD_PRETRAINED} ({layout})", default),
            (f"{SHD_PRETRAINED} ({layout}, --refine-tv {other.tv:g})", other),
        ):
            rows.append(Row(label, shells, fit.shm_coeff, seconds, fit.fractions, fit.tissues))
    start = time.perf_counter()
    epochs = QUICK_EPOCHS if args.quick else args.epochs
    model = get_method(
        "SHD-TV",
        prepared.gtab,
        prepared.responses,
        network=QUICK_NETWORK if args.quick else NetworkConfig(),
        seed=args.seed,
        **({} if epochs is None else {"epochs": epochs}),
    ).build()
    model.train_network(prepared.data.dwi, prepared.mask)
    trained = time.perf_counter() - start
    # one trained network, deconvolved as it answers (the paper) and refined per voxel (the default)
    for steps, label in ((0, SHD_NETWORK_ONLY), (args.refine_steps, SHD_DEFAULT)):
        start = time.perf_counter()
        fit = model.predict(prepared.data.dwi, prepared.mask, refine_steps=steps)
        seconds = trained + time.perf_counter() - start
        rows.append(Row(label, shells, fit.shm_coeff, seconds, fit.fractions, fit.tissues))
    return rows


def score(
    row: Row, reference: tuple[np.ndarray, np.ndarray], clear: np.ndarray, tissue: np.ndarray | None = None
) -> dict[str, Any]:
    """Main-peak agreement and crossings found of one row against the reference peaks; with the reference's
    dominant ``tissue`` per voxel (:func:`reference_tissue`), the row's mean tissue fractions (normalised to
    sum 1) in the voxels of each reference tissue."""
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
        if tissue is not None and row.tissues == TISSUES:
            normalised = row.fractions / np.maximum(row.fractions.sum(-1, keepdims=True), 1e-12)
            result["fractions_by_reference_tissue"] = {
                name: {
                    "voxels": int((tissue == k).sum()),
                    **dict(zip(TISSUES, normalised[tissue == k].mean(0).tolist())),
                }
                for k, name in enumerate(TISSUES)
                if (tissue == k).any()
            }
    return result


def evaluate_volume(volume: Volume, args: argparse.Namespace, footer: str) -> dict[str, Any]:
    """Every method on every shell selection of one volume, scored against its reference; ``footer`` (the
    command, commit and machine) goes on the volume's figure."""
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
    tissue = reference_tissue(volume, ref_sh, prepared.mask)
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
        "rows": [score(row, (ref_dirs, ref_values), clear, tissue) for row in rows],
    }
    if volume.reference is not None:  # a volume of --volume: a figure of SHD-TV's answer with every shell
        default = next(row for row in reversed(rows) if row.method == SHD_DEFAULT)
        record["figure"] = _figure(args, volume.name, data, prepared.mask, default, footer).name
    logger.info("%s: %d rows", volume.name, len(rows))
    return record


def figure_path(args: argparse.Namespace, volume: str) -> Path:
    """``OUT/realdata_<volume>.png``."""
    return report_path(args, f"_{volume}.png")


def _figure(args: argparse.Namespace, volume: str, data: DWIData, mask: np.ndarray, row: Row, footer: str) -> Path:
    """Peaks of a row over the mean b=0 image, and its tissue fraction maps (several tissues); ``footer`` (the
    command, commit and machine) ends the title."""
    dirs, values = find_peaks(row.fodf_sh, mask, relative_peak_threshold=PEAK_THRESHOLD, npeaks=NPEAKS)
    b0 = data.dwi[..., find_shells(data.bvals).index < 0].mean(-1)
    fractions = row.fractions if row.fractions is not None and row.fractions.shape[-1] > 1 else None
    return plot_peaks_qc(
        figure_path(args, volume),
        np.where(mask, b0, 0.0),
        dirs,
        values,
        title=f"{volume}: {row.method}, shells: {row.shells}\n" + textwrap.fill(footer, FOOTER_WIDTH),
        background_label="mean b=0 (scanner units)",
        fractions=fractions,
        tissues=row.tissues if fractions is not None else (),
    )


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
        by_tissue = [row for row in fractions if "fractions_by_reference_tissue" in row]
        if by_tissue:
            lines += [
                "",
                "Tissue fractions (normalised to sum 1, mean) in the voxels where the reference's own WM, GM or CSF "
                "output is the largest:",
                "",
                "| method | shells | reference tissue (voxels) | WM | GM | CSF |",
                "|---|---|---|---|---|---|",
            ]
            for row in by_tissue:
                for name, means in row["fractions_by_reference_tissue"].items():
                    lines.append(
                        f"| {row['method']} | {row['shells']} | {name.upper()} ({means['voxels']}) | "
                        + " | ".join(f"{means[t]:.2f}" for t in TISSUES)
                        + " |"
                    )
        if "figure" in volume:
            lines += ["", f"![{volume['volume']}: peaks and tissue fractions]({volume['figure']})"]
        lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    check_report_outputs(args, *(figure_path(args, name) for name, _ in args.volume))
    torch.set_num_threads(args.threads)
    record = start_record(args)
    m = record["machine"]
    footer = (
        f"{record['command']} | git {m['git_commit']} | {m['cpu_model']}, {m['cores']} cores, "
        f"{m['threads']} threads | {record['date']}"
    )
    record["settings"] = (
        f"{QUICK_EPOCHS} epochs, widths {list(QUICK_NETWORK.widths)} (--quick)"
        if args.quick
        else f"{args.epochs or TrainConfig().epochs} epochs, default network, seed {args.seed}"
    )
    with tempfile.TemporaryDirectory(prefix="equidmri-realdata-") as scratch:
        volumes = [dipy_volume("small_64D")]
        volumes += [folder_volume(name, Path(folder), Path(scratch)) for name, folder in args.volume]
        record["volumes"] = [evaluate_volume(volume, args, footer) for volume in volumes]
    write_report(args, record, _markdown(record))
    return 0
