"""The two experiments of ``equidmri bench fa`` (Goodwin-Allcock et al., CDMRI 2022): FA from 6-direction scans
by an FCN and a spherical CNN.

The data, the experiments, the statistics and the options: :mod:`equidmri.bench.options.fa`
(``equidmri bench fa --help``).
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np
import torch
from dipy.core.gradients import GradientTable
from scipy.spatial.transform import Rotation
from scipy.stats import ttest_rel

from equidmri.bench.fa_report import render_markdown, write_figures
from equidmri.bench.options.fa import DEFAULTS, QUICK
from equidmri.bench.report import check_report_outputs, start_record, write_report
from equidmri.data import load_real_volume
from equidmri.dmri.baselines import fit_dti_fa
from equidmri.dmri.gradients import B0_THRESHOLD
from equidmri.dmri.mask import compute_mask
from equidmri.microstructure import (
    FAModel,
    FATrainConfig,
    fit_tensors,
    get_scheme,
    rotate_to_ap,
    sample_tensors,
    scheme_gtab,
    select_subset,
    simulate_acquisition,
    tensor_fa,
    tensor_signals,
    train_fa_model,
)
from equidmri.microstructure.simulate import SNR
from equidmri.sphere.healpix import pixel_of
from equidmri.sphere.hemisphere import hemisphere_centres, representative

logger = logging.getLogger(__name__)

FA_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # ground-truth FA bin edges; the last bin includes 1.0
HIGH_FA = 0.4  # the paper's scheme-robustness comparison is over FA > 0.4
MAP_FA = 0.6  # voxels of the principal-direction error map have FA above this
MAP_NSIDE = 4  # HEALPix resolution of that map (V+ = 96 pixels)
SMALL_FRACTION = 0.1  # the data-efficiency S-CNN sees this fraction of the AP training set
INVARIANCE_VOXELS = 1000  # test tensors, each under one random rotation
REAL_DATA = "small_64D"


def fa_bin_labels() -> list[str]:
    """``["0.0-0.2", ..., "0.8-1.0"]``."""
    return [f"{a:.1f}-{b:.1f}" for a, b in zip(FA_BINS, FA_BINS[1:])]


def bin_index(fa: np.ndarray) -> np.ndarray:
    """Bin of each ground-truth FA ``(M,)``, 0..4 (FA >= 0.8, including 1, in the last bin)."""
    return np.clip(np.digitize(fa, FA_BINS[1:-1]), 0, len(FA_BINS) - 2)


def rmse_records(base: dict[str, Any], fa: np.ndarray, error: np.ndarray) -> list[dict[str, Any]]:
    """One record per FA bin and one for ``"all"``: ``{**base, fa_bin, rmse, n}`` (rmse None when n = 0)."""
    index = bin_index(fa)
    groups = [(label, index == b) for b, label in enumerate(fa_bin_labels())] + [("all", np.ones_like(fa, bool))]
    return [
        {
            **base,
            "fa_bin": label,
            "rmse": float(np.sqrt(np.mean(error[keep] ** 2))) if keep.any() else None,
            "n": int(keep.sum()),
        }
        for label, keep in groups
    ]


def paired_test(fa: np.ndarray, error_a: np.ndarray, error_b: np.ndarray, low: float, high: float) -> dict[str, Any]:
    """Paired t-test of the squared errors of two settings (a minus b) on the same voxels, ``low <= FA < high``.

    The top bin includes FA = 1. ``t > 0`` means a has the larger errors.
    """
    keep = (fa >= low) & ((fa < high) | (high == FA_BINS[-1]))
    result = ttest_rel(error_a[keep] ** 2, error_b[keep] ** 2) if keep.sum() > 1 else None
    return {
        "fa_range": f"{low:.1f}-{high:.1f}",
        "n": int(keep.sum()),
        "rmse_a": float(np.sqrt(np.mean(error_a[keep] ** 2))) if keep.any() else None,
        "rmse_b": float(np.sqrt(np.mean(error_b[keep] ** 2))) if keep.any() else None,
        "t": None if result is None else float(result.statistic),
        "p": None if result is None else float(result.pvalue),
    }


class EvaluationSet:
    """Signals of the same voxels under the Skare and the Jones schemes, with ground-truth FA."""

    def __init__(
        self,
        name: str,
        fa: np.ndarray,
        acquisitions: dict[str, tuple[np.ndarray, GradientTable]],
        tensors: np.ndarray | None = None,
    ) -> None:
        self.name, self.fa, self.acquisitions, self.tensors = name, fa, acquisitions, tensors

    def label(self, scheme: str) -> str:
        return f"{self.name}-{scheme}"


def simulated_test_set(n: int, rng: np.random.Generator) -> EvaluationSet:
    tensors = sample_tensors(n, rng)
    acquisitions = {}
    for scheme in ("skare", "jones"):
        gtab = scheme_gtab(get_scheme(scheme))
        acquisitions[scheme] = (simulate_acquisition(tensors, gtab, rng).signals, gtab)
    return EvaluationSet("sim", tensor_fa(tensors), acquisitions, tensors)


def real_test_set() -> tuple[EvaluationSet, np.ndarray, np.ndarray]:
    """``small_64D`` masked voxels, and the mask and reference FA volume ``(X, Y, Z)`` for the maps."""
    data = load_real_volume(REAL_DATA)
    gtab = data.gtab()
    mask = compute_mask(data.dwi, gtab, data.valid)
    reference = fit_dti_fa(data.dwi, gtab, mask)
    b0 = np.flatnonzero(data.bvals <= B0_THRESHOLD)
    dw = np.flatnonzero(data.bvals > B0_THRESHOLD)
    acquisitions = {}
    for scheme in ("skare", "jones"):
        volumes = np.concatenate([b0, dw[select_subset(data.bvecs[dw], get_scheme(scheme))]])
        subset = GradientTable(gtab.gradients[volumes], b0_threshold=B0_THRESHOLD)
        acquisitions[scheme] = (data.dwi[mask][:, volumes].astype(np.float64), subset)
    return EvaluationSet(REAL_DATA, reference[mask], acquisitions), mask, reference


def invariance_error(model: FAModel, tensors: np.ndarray, seed: int) -> dict[str, float]:
    """Largest and mean |FA change| when each noise-free tensor is rotated by a random rotation."""
    rotations = Rotation.random(len(tensors), random_state=seed).as_matrix()
    rotated = rotations @ tensors @ rotations.transpose(0, 2, 1)
    gtab = scheme_gtab(get_scheme(model.scheme))
    before, after = (model.predict(tensor_signals(t, gtab), gtab) for t in (tensors, rotated))
    change = np.abs(after - before)
    return {"max_abs": float(change.max()), "mean_abs": float(change.mean()), "n": len(tensors)}


def direction_map(tensors: np.ndarray, fa: np.ndarray, error: np.ndarray) -> np.ndarray:
    """Mean |error| of the voxels with FA > ``MAP_FA`` per V+ pixel (nside ``MAP_NSIDE``) of their e1, NaN if none."""
    keep = fa > MAP_FA
    principal = np.linalg.eigh(tensors[keep])[1][:, :, -1]
    pixel = representative(MAP_NSIDE)[pixel_of(MAP_NSIDE, principal)]
    n_pixels = len(hemisphere_centres(MAP_NSIDE))
    counts = np.bincount(pixel, minlength=n_pixels)
    sums = np.bincount(pixel, weights=np.abs(error[keep]), minlength=n_pixels)
    return np.divide(sums, counts, out=np.full(n_pixels, np.nan), where=counts > 0)


def train_model(
    name: str, tensors: np.ndarray, rng: np.random.Generator, config: FATrainConfig, progress: bool
) -> tuple[FAModel, dict[str, Any]]:
    """Train ``name`` on Skare-scheme simulations of ``tensors``; the model and its training record."""
    gtab = scheme_gtab(get_scheme("skare"))
    voxels = simulate_acquisition(tensors, gtab, rng)
    torch.manual_seed(config.seed)
    model = FAModel(name, "skare")
    start = time.perf_counter()
    losses = train_fa_model(model, voxels.signals, gtab, voxels.fa, config, progress=progress)
    return model, {"n": len(tensors), "final_mse": losses[-1], "seconds": time.perf_counter() - start}


def run(args: argparse.Namespace) -> int:
    """Run both experiments and write the JSON, the markdown page and the figures."""
    sizes = {
        key: (QUICK if args.quick else DEFAULTS)[key] if getattr(args, key) is None else getattr(args, key)
        for key in DEFAULTS
    }
    if min(sizes.values()) < 1:
        raise ValueError(f"--n-train, --n-test and --epochs must be >= 1, got {sizes}")
    check_report_outputs(args)
    torch.set_num_threads(args.threads)
    record = start_record(args)
    record["settings"] = {
        **sizes,
        "seed": args.seed,
        "snr": SNR,
        "fa_bins": list(FA_BINS),
        "map_fa": MAP_FA,
        "map_nside": MAP_NSIDE,
        "small_fraction": SMALL_FRACTION,
    }
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    config = FATrainConfig(epochs=sizes["epochs"], seed=args.seed)
    progress = args.verbose > 0
    train_tensors = sample_tensors(sizes["n_train"], rng)
    ap_tensors = rotate_to_ap(train_tensors)
    n_small = max(1, round(SMALL_FRACTION * len(ap_tensors)))
    runs = {  # (model, train label) -> tensors
        ("fcn", "sim-skare"): train_tensors,
        ("scnn", "sim-skare"): train_tensors,
        ("fcn", "sim-skare-ap"): ap_tensors,
        ("scnn", "sim-skare-ap"): ap_tensors,
        ("scnn-10pct", "sim-skare-ap-10pct"): ap_tensors[:n_small],
    }
    models, record["training"] = {}, []
    for (name, train), tensors in runs.items():
        models[name, train], info = train_model(name.split("-")[0], tensors, rng, config, progress)
        record["training"].append({"model": name, "train": train, **info})
        logger.info("trained %s on %s: %s", name, train, info)
    test_sets = [simulated_test_set(sizes["n_test"], rng)]
    real, mask, reference = real_test_set()
    test_sets.append(real)

    errors = {}  # (experiment, model, train, test) -> (fa, error)
    for test in test_sets:
        for scheme, (signals, gtab) in test.acquisitions.items():
            fitted = tensor_fa(fit_tensors(signals, gtab))
            errors["scheme", "fit", "none", test.label(scheme)] = (test.fa, fitted - test.fa)
            for (name, train), model in models.items():
                experiment = "scheme" if train == "sim-skare" else "orientation"
                if experiment == "orientation" and scheme != "skare":
                    continue
                errors[experiment, name, train, test.label(scheme)] = (test.fa, model.predict(signals, gtab) - test.fa)
    for name in ("fcn", "scnn"):  # the unrestricted networks are the orientation experiment's reference
        for test in test_sets:
            key = ("scheme", name, "sim-skare", test.label("skare"))
            errors[("orientation", *key[1:])] = errors[key]
    record["records"] = [
        rec
        for (experiment, name, train, test), (fa, error) in errors.items()
        for rec in rmse_records({"experiment": experiment, "model": name, "train": train, "test": test}, fa, error)
    ]
    record["ttests"] = paired_tests(errors, test_sets)
    record["invariance"] = {
        f"{name} ({train})": invariance_error(model, test_sets[0].tensors[:INVARIANCE_VOXELS], args.seed)
        for (name, train), model in models.items()
    }
    sim = test_sets[0]
    record["direction_maps"] = {
        f"{name} ({train})": direction_map(
            sim.tensors, sim.fa, errors["orientation", name, train, "sim-skare"][1]
        ).tolist()
        for name, train in (
            ("fcn", "sim-skare"),
            ("scnn", "sim-skare"),
            ("fcn", "sim-skare-ap"),
            ("scnn", "sim-skare-ap"),
            ("scnn-10pct", "sim-skare-ap-10pct"),
        )
    }
    slice_maps = {
        f"{name} ({scheme})": volume_of(mask, errors[experiment, name, train, real.label(scheme)])
        for experiment, name, train in (
            ("scheme", "fit", "none"),
            ("scheme", "fcn", "sim-skare"),
            ("scheme", "scnn", "sim-skare"),
        )
        for scheme in ("skare", "jones")
    }
    record["seconds"] = time.perf_counter() - start
    figures = write_figures(args, record, errors, reference, mask, slice_maps, hemisphere_centres(MAP_NSIDE))
    write_report(args, record, render_markdown(record, figures))
    return 0


def volume_of(mask: np.ndarray, fa_error: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The predicted FA of the masked voxels as a volume ``(X, Y, Z)``, NaN outside the mask."""
    fa, error = fa_error
    volume = np.full(mask.shape, np.nan)
    volume[mask] = fa + error
    return volume


def paired_tests(errors: dict, test_sets: list[EvaluationSet]) -> list[dict[str, Any]]:
    """Skare vs Jones per model (same voxels), and each network vs its reference on the same test voxels."""
    tests = []
    for test in test_sets:
        skare, jones = test.label("skare"), test.label("jones")
        for name, train in (("fit", "none"), ("fcn", "sim-skare"), ("scnn", "sim-skare")):
            fa, error_skare = errors["scheme", name, train, skare]
            for low, high in [*zip(FA_BINS, FA_BINS[1:]), (HIGH_FA, FA_BINS[-1])]:
                tests.append(
                    {
                        "experiment": "scheme",
                        "model": name,
                        "train": train,
                        "a": jones,
                        "b": skare,
                        **paired_test(fa, errors["scheme", name, train, jones][1], error_skare, low, high),
                    }
                )
        comparisons = [
            ("scheme", "fcn", "sim-skare", "scheme", "fit", "none"),
            ("scheme", "scnn", "sim-skare", "scheme", "fit", "none"),
            ("orientation", "fcn", "sim-skare-ap", "orientation", "fcn", "sim-skare"),
            ("orientation", "scnn", "sim-skare-ap", "orientation", "scnn", "sim-skare"),
            ("orientation", "scnn-10pct", "sim-skare-ap-10pct", "orientation", "scnn", "sim-skare-ap"),
        ]
        for exp_a, name_a, train_a, exp_b, name_b, train_b in comparisons:
            fa, error_a = errors[exp_a, name_a, train_a, skare]
            tests.append(
                {
                    "experiment": exp_a,
                    "model": f"{name_a} vs {name_b}",
                    "train": f"{train_a} vs {train_b}",
                    "a": skare,
                    "b": skare,
                    **paired_test(fa, error_a, errors[exp_b, name_b, train_b, skare][1], FA_BINS[0], FA_BINS[-1]),
                }
            )
    return tests
