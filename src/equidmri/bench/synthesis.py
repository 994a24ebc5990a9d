"""``equidmri bench synthesis``: the four synthesis modes judged by the self-adaptive autoencoder on real voxels.

The subjects, the protocol, the statistics and the options: :mod:`equidmri.bench.options.synthesis`
(``equidmri bench synthesis --help``); the page and the figure: :mod:`equidmri.bench.synthesis_report`.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from dipy.core.gradients import GradientTable
from scipy.stats import wilcoxon

from equidmri.bench.options.synthesis import DEFAULTS, QUICK, SIZES
from equidmri.bench.report import start_figure_report, write_report
from equidmri.bench.synthesis_report import render_markdown, write_figure
from equidmri.data import load_real_volume
from equidmri.dmri.gradients import make_gtab
from equidmri.dmri.io import DWIData
from equidmri.dmri.mask import compute_mask
from equidmri.microstructure.networks import FCN
from equidmri.nn.training import fit_mse, predict_batched
from equidmri.sims.phantoms import make_phantom
from equidmri.sims.synthesis import make_protocol
from equidmri.synth import MODES, AutoencoderConfig, calibrate, reconstruct, synthesize, train_autoencoder
from equidmri.synth.calibration import TissueStatistics
from equidmri.synth.quality import tensor_fa_and_direction, voxel_errors
from equidmri.synth.synthesis import RANDOM_LAMBDA_PAR, RANDOM_PERP_RATIO

logger = logging.getLogger(__name__)

PHANTOM = "phantom"
WM_FA = 0.3  # white matter: FA of the measured (phantom: noise-free) signal's own tensor fit above this
BATCH_SIZE = 128  # voxels per Adam step of the autoencoder and the FA estimator
LEARNING_RATE = 3e-3  # Adam, both networks
FA_HIDDEN = (64, 32)  # hidden widths of the FA estimator (an FCN, ReLU)
PHANTOM_SHELLS = (1000.0, 2000.0)  # s/mm²
PHANTOM_DIRECTIONS = 30  # per shell
PHANTOM_B0 = 2
PHANTOM_SNR = 30.0
PHANTOM_SEEDS = {"protocol": 2101, "calibration": 2102, "test": 2103}  # the test phantom's geometry is new
ERROR_KEYS = {"signal": "signal_ae", "fa": "fa_ae", "direction": "direction_error_deg"}
REGIONS = ("wm", "all")


@dataclass(frozen=True, eq=False)
class Subject:
    """A subject's calibration and its evaluation voxels ``(M, N)``, b0-normalised (``truth``: noise-free)."""

    name: str
    stats: TissueStatistics
    gtab: GradientTable
    signals: np.ndarray
    truth: np.ndarray | None
    description: str

    def references(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``{"measured": (signals, FA, direction), "truth": ...}``: what reconstructions are scored against, with
        its tensor fit (:func:`tensor_fa_and_direction`); "truth" only for a phantom."""
        targets = {"measured": self.signals} | ({} if self.truth is None else {"truth": self.truth})
        return {name: (target, *tensor_fa_and_direction(target, self.gtab)) for name, target in targets.items()}


def b0_normalised(voxels: np.ndarray, b0s: np.ndarray) -> np.ndarray:
    """``(M, N)`` signals divided by each voxel's mean b=0 (voxels with a b=0 mean <= 0 are dropped)."""
    voxels = np.asarray(voxels, dtype=np.float64)
    b0 = voxels[:, b0s].mean(1, keepdims=True)
    keep = b0[:, 0] > 0
    return voxels[keep] / b0[keep]


def real_subject(name: str) -> Subject:
    """A dipy volume: calibrated on its whole crop (``compute_mask``) and evaluated on the same voxels."""
    data = load_real_volume(name)
    gtab = data.gtab()
    mask = compute_mask(data.dwi, gtab, data.valid) & data.valid
    signals = b0_normalised(data.dwi[mask], gtab.b0s_mask)
    return Subject(name, calibrate(data, mask), gtab, signals, None, f"{mask.sum()} voxels of the crop")


def phantom_subject(size: int) -> Subject:
    """Calibrated on one phantom, evaluated on another of new geometry (same scheme), with its noise-free signal."""
    protocol = make_protocol(
        np.random.default_rng(PHANTOM_SEEDS["protocol"]), n_b0=PHANTOM_B0, shells=PHANTOM_SHELLS,
        directions_per_shell=PHANTOM_DIRECTIONS,
    )  # fmt: skip
    gtab = make_gtab(protocol.bvals, protocol.bvecs)
    cal = make_phantom(size, protocol, np.random.default_rng(PHANTOM_SEEDS["calibration"]), snr=PHANTOM_SNR)
    data = DWIData(cal.dwi, np.eye(4), protocol.bvals, protocol.bvecs, cal.mask, np.ones(cal.mask.shape, bool), 0)
    test = make_phantom(size, protocol, np.random.default_rng(PHANTOM_SEEDS["test"]), snr=PHANTOM_SNR)
    clean = make_phantom(size, protocol, np.random.default_rng(PHANTOM_SEEDS["test"]), snr=None)  # same geometry
    b0s = gtab.b0s_mask
    keep = clean.dwi[test.mask][:, b0s].mean(1) > 0
    signals = b0_normalised(test.dwi[test.mask][keep], b0s)
    truth = b0_normalised(clean.dwi[test.mask][keep], b0s)
    if signals.shape != truth.shape:  # a noisy b=0 mean <= 0 where the clean one is positive
        raise RuntimeError("the noisy and noise-free test phantoms lost different voxels")
    return Subject(PHANTOM, calibrate(data), gtab, signals, truth, f"{size}³, {signals.shape[0]} mask voxels")


def _summaries(errors: dict[str, np.ndarray], regions: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Mean errors per region: ``{region: {n, signal_mae, fa_mae, direction_error_deg_mean, ..._median}}``."""
    out = {}
    for region, keep in regions.items():
        angles = errors["direction_error_deg"][keep]
        out[region] = {
            "n": int(keep.sum()),
            "signal_mae": float(errors["signal_ae"][keep].mean()) if keep.any() else None,
            "fa_mae": float(errors["fa_ae"][keep].mean()) if keep.any() else None,
            "direction_error_deg_mean": float(angles.mean()) if keep.any() else None,
            "direction_error_deg_median": float(np.median(angles)) if keep.any() else None,
        }
    return out


def _train_fa_estimator(signals: np.ndarray, fa: np.ndarray, epochs: int, seed: int) -> FCN:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = FCN(signals.shape[1], FA_HIDDEN)
    fit_mse(network, signals, fa, epochs=epochs, batch_size=BATCH_SIZE, lr=LEARNING_RATE, seed=seed)
    return network


def _fa_record(predicted: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    error = np.abs(predicted - reference)
    wm = reference > WM_FA
    return {
        "fa_mae_wm": float(error[wm].mean()) if wm.any() else None,
        "fa_mae_all": float(error.mean()),
        "n_wm": int(wm.sum()),
        "n_all": int(error.size),
    }


def evaluate_subject(subject: Subject, settings: dict[str, Any], index: int) -> dict[str, Any]:
    """Train and score every mode and seed on one subject; per-voxel errors averaged over the seeds included."""
    targets = subject.references()
    references = list(targets)
    regions = {ref: {"wm": fa > WM_FA, "all": np.ones(fa.size, dtype=bool)} for ref, (_, fa, _) in targets.items()}
    reference_fa = targets[references[-1]][1]  # the truth where there is one
    records, cross, fa_rows = [], [], []
    voxelwise = {(ref, mode): [] for ref in references for mode in MODES}
    config = {"epochs": settings["epochs"], "batch_size": BATCH_SIZE, "lr": LEARNING_RATE}
    for seed in range(settings["seed"], settings["seed"] + settings["seeds"]):
        networks, held_out = {}, {}
        for m, mode in enumerate(MODES):
            rng = np.random.default_rng([seed, index, m])
            train = synthesize(subject.stats, mode, settings["n_train"], rng)
            held_out[mode] = synthesize(subject.stats, mode, settings["held_out"], rng)
            cpu = time.process_time()
            network, losses = train_autoencoder(train.signals, AutoencoderConfig(**config, seed=seed))
            cpu = time.process_time() - cpu
            networks[mode] = network
            rebuilt = reconstruct(network, subject.signals)
            for ref, (target, fa, direction) in targets.items():
                errors = voxel_errors(rebuilt, target, subject.gtab, (fa, direction))
                voxelwise[ref, mode].append(errors)
                for region, summary in _summaries(errors, regions[ref]).items():
                    records.append(
                        {"subject": subject.name, "mode": mode, "seed": seed, "reference": ref, "region": region,
                         **summary, "train_final_mse": losses[-1], "train_cpu_s": cpu}
                    )  # fmt: skip
            clean_fa = tensor_fa_and_direction(train.signals_clean, subject.gtab)[0]
            cpu = time.process_time()
            estimator = _train_fa_estimator(train.signals, clean_fa, settings["fa_epochs"], seed)
            fa_rows.append(
                {"subject": subject.name, "method": mode, "seed": seed,
                 "train_cpu_s": time.process_time() - cpu,
                 **_fa_record(predict_batched(estimator, subject.signals), reference_fa)}
            )  # fmt: skip
        clean_fits = {b: tensor_fa_and_direction(voxels.signals_clean, subject.gtab) for b, voxels in held_out.items()}
        for (a, network), (b, voxels) in itertools.product(networks.items(), held_out.items()):
            rebuilt = reconstruct(network, voxels.signals)
            dw = voxels.shell_index >= 0
            fa_error = voxel_errors(rebuilt, voxels.signals_clean, subject.gtab, clean_fits[b])["fa_ae"]
            cross.append(
                {"subject": subject.name, "seed": seed, "train_mode": a, "test_mode": b,
                 "signal_mae_clean": float(np.abs(rebuilt[:, dw] - voxels.signals_clean[:, dw]).mean()),
                 "noise_mae": float(np.abs(voxels.signals[:, dw] - voxels.signals_clean[:, dw]).mean()),
                 "fa_mae_clean": float(fa_error.mean())}
            )  # fmt: skip
    if subject.truth is not None:  # the reference row: dipy's FA of the noisy signal against the truth
        measured_fa = targets["measured"][1]
        fa_rows.append({"subject": subject.name, "method": "dipy DTI (noisy signal)", "seed": None, "train_cpu_s": 0.0,
                        **_fa_record(measured_fa, reference_fa)})  # fmt: skip
    averaged = {
        key: {name: np.mean([e[name] for e in runs], axis=0) for name in ERROR_KEYS.values()}
        for key, runs in voxelwise.items()
    }
    tests = []
    for ref, region in itertools.product(references, REGIONS):
        keep = regions[ref][region]
        for a, b in itertools.combinations(MODES, 2):
            for metric, key in ERROR_KEYS.items():
                tests.append(
                    {"subject": subject.name, "reference": ref, "region": region, "a": a, "b": b, "metric": metric,
                     **paired_wilcoxon(averaged[ref, a][key][keep], averaged[ref, b][key][keep])}
                )  # fmt: skip
    calibration = subject.stats.summary()
    noise = None
    if subject.truth is not None:  # what the noise alone does: the measured signal scored against the truth
        noise = _summaries(
            voxel_errors(subject.signals, subject.truth, subject.gtab, targets["truth"][1:]), regions["truth"]
        )
    return {
        "records": records,
        "cross": cross,
        "fa_estimator": fa_rows,
        "tests": tests,
        "subject": {
            "name": subject.name,
            "description": subject.description,
            "volumes": int(subject.gtab.bvals.size),
            "voxels": {
                f"{ref}_{region}": int(keep.sum()) for ref in references for region, keep in regions[ref].items()
            },
            "noise_vs_truth": noise,
            "snr": calibration["snr"],
            "snr_method": calibration["snr_method"],
            "calibration_voxels": calibration["voxels"],
            "shells": [
                {key: sh[key] for key in ("bval", "volumes", "wm_lambda_par", "wm_lambda_perp")}
                for sh in calibration["shells"]
            ],
        },  # fmt: skip
    }


def paired_wilcoxon(errors_a: np.ndarray, errors_b: np.ndarray) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of paired per-voxel errors (a minus b): n, median difference, statistic,
    p (None where fewer than 2 voxels or every difference is zero)."""
    difference = errors_a - errors_b
    result = {"n": int(difference.size), "median_difference": float(np.median(difference)) if difference.size else None}
    if difference.size < 2 or not np.any(difference != 0):
        return {**result, "statistic": None, "p": None}
    test = wilcoxon(errors_a, errors_b)
    return {**result, "statistic": float(test.statistic), "p": float(test.pvalue)}


def summarise(records: list[dict[str, Any]], keys: tuple[str, ...], values: tuple[str, ...]) -> list[dict[str, Any]]:
    """Mean and sd (ddof 1; 0 for one seed) over the seeds of ``values`` per combination of ``keys``."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(tuple(rec[k] for k in keys), []).append(rec)
    rows = []
    for group, recs in groups.items():
        row = dict(zip(keys, group))
        row["seeds"] = len(recs)
        for value in values:
            data = np.array([r[value] for r in recs if r[value] is not None], dtype=float)
            row[value] = float(data.mean()) if data.size else None
            row[f"{value}_sd"] = float(data.std(ddof=1)) if data.size > 1 else (0.0 if data.size else None)
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    """Run every subject, write the JSON record, the page and the figure."""
    sizes = QUICK if args.quick else DEFAULTS
    figure, record = start_figure_report(args, {key: sizes[key] for key in SIZES})
    settings = {key: getattr(args, key) for key in SIZES} | {"seed": args.seed}
    if min(settings[key] for key in SIZES) < 1 or settings["phantom_size"] < 8:
        raise ValueError(f"every size must be >= 1 and --phantom-size >= 8, got {settings}")
    settings |= {"held_out": sizes["held_out"], "real": list(sizes["real"])}
    record["settings"] = {
        **settings,
        "modes": list(MODES),
        "wm_fa": WM_FA,
        "batch_size": BATCH_SIZE,
        "lr": LEARNING_RATE,
        "fa_hidden": list(FA_HIDDEN),
        "phantom": {
            "shells": list(PHANTOM_SHELLS),
            "directions_per_shell": PHANTOM_DIRECTIONS,
            "b0": PHANTOM_B0,
            "snr": PHANTOM_SNR,
            "seeds": PHANTOM_SEEDS,
        },  # fmt: skip
        "random_wm": {"lambda_par": list(RANDOM_LAMBDA_PAR), "perp_ratio": list(RANDOM_PERP_RATIO)},
        "statistics": "two-sided Wilcoxon signed-rank over voxels of the per-voxel error averaged over the seeds",
    }
    start, cpu = time.perf_counter(), time.process_time()
    subjects = [real_subject(name) for name in settings["real"]] + [phantom_subject(settings["phantom_size"])]
    results = []
    for index, subject in enumerate(subjects):
        results.append(evaluate_subject(subject, settings, index))
        logger.info("%s done after %.0f s", subject.name, time.perf_counter() - start)
    for key in ("records", "cross", "fa_estimator", "tests"):
        record[key] = [row for result in results for row in result[key]]
    record["subjects"] = [result["subject"] for result in results]
    record["summary"] = summarise(
        record["records"], ("subject", "reference", "region", "mode"),
        ("signal_mae", "fa_mae", "direction_error_deg_mean", "direction_error_deg_median", "train_final_mse",
         "train_cpu_s"),
    )  # fmt: skip
    record["cross_summary"] = summarise(
        record["cross"], ("subject", "train_mode", "test_mode"), ("signal_mae_clean", "noise_mae", "fa_mae_clean")
    )
    record["fa_estimator_summary"] = summarise(
        record["fa_estimator"], ("subject", "method"), ("fa_mae_wm", "fa_mae_all", "train_cpu_s")
    )
    record["elapsed_s"] = time.perf_counter() - start
    record["cpu_s"] = time.process_time() - cpu
    write_figure(figure, record)
    write_report(args, record, render_markdown(record, figure.name))
    return 0
