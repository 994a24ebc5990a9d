"""``equidmri bench spherical-layers``: dense, SH-space and graph-Chebyshev denoisers × activations × activation
space, against dipy's MP-PCA and Patch2Self.

The subjects, the protocol and the measures: :mod:`equidmri.bench.options.spherical_layers`
(``equidmri bench spherical-layers --help``); the page: :mod:`equidmri.bench.spherical_layers_report`.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from dipy.core.gradients import GradientTable
from dipy.reconst.csdeconv import auto_response_ssst
from dipy.reconst.dti import TensorModel
from scipy.spatial.transform import Rotation

from equidmri.bench.options.spherical_layers import DEFAULTS, QUICK, SIZES
from equidmri.bench.report import start_figure_report, write_report
from equidmri.bench.spherical_layers_report import render_markdown
from equidmri.data import load_real_volume
from equidmri.denoise import (
    ACTIVATIONS,
    DIPY_DENOISERS,
    DenoiseConfig,
    DenoiserSpec,
    SignalDenoiser,
    apply_denoiser,
    reference_s0,
    train_denoiser,
)
from equidmri.dmri.baselines import fit_csd
from equidmri.dmri.gradients import make_gtab
from equidmri.dmri.mask import compute_mask
from equidmri.dmri.peaks import find_peaks
from equidmri.nn.training import predict_batched
from equidmri.sims.phantoms import make_phantom
from equidmri.sims.synthesis import Protocol, add_rician_noise
from equidmri.sphere.healpix import pixel_centres
from equidmri.sphere.sh import sh_fit_matrix, sh_matrix, sh_rotation_matrix
from equidmri.viz.spheres import plot_sphere_maps

logger = logging.getLogger(__name__)

WM_FA = 0.3  # white matter: FA of the clean signal's tensor fit above this
TENSOR_FLOOR = 1e-3  # smallest b0-normalised signal passed to the log-linear tensor fit
RESPONSE_FA = 0.7  # dipy auto_response_ssst FA threshold of the CSD response voxels
BATCH_SIZE, LEARNING_RATE = 128, 3e-3  # Adam, every network
ROTATION_LMAX = 8  # SH degree of the rotation-invariance measure (the fit of the clean signal and of the outputs)
ROTATION_VOXELS = 200  # WM test voxels of the rotation measure
ROTATION_NOISE = 0.1  # σ of the Gaussian perturbation of the rotation measure, fraction of b=0 (SNR 10)
TIMING_VOXELS = 4096  # voxels of one timed forward pass
FIGURE_NSIDE = 16  # HEALPix resolution of the activation figure (3072 samples)
PHANTOM_SEEDS = {"train": 2111, "test": 2112}  # the test phantom's geometry is new
SH_BASIS = "descoteaux07"


@dataclass(frozen=True, eq=False)
class Subject:
    """Training voxels ``(M, N)`` and a clean test volume ``(X, Y, Z, N)`` with its test mask, on one scheme."""

    name: str
    bvals: np.ndarray
    bvecs: np.ndarray
    train: np.ndarray
    volume: np.ndarray
    test: np.ndarray
    description: str

    def gtab(self) -> GradientTable:
        return make_gtab(self.bvals, self.bvecs)


def real_subject(seed: int) -> Subject:
    """small_64D: a random half of its voxels trains, the other half tests; the measured signal is the target."""
    data = load_real_volume("small_64D")
    mask = compute_mask(data.dwi, data.gtab(), data.valid) & data.valid
    where = np.argwhere(mask)
    chosen = np.random.default_rng(seed).permutation(len(where))
    test = np.zeros_like(mask)
    test[tuple(where[chosen[len(where) // 2 :]].T)] = True
    train = data.dwi[mask & ~test].astype(np.float64)
    volume = data.dwi.astype(np.float64)
    return Subject("small_64D", data.bvals, data.bvecs, train, volume, test, f"{mask.sum()} voxels, half train/test")


def phantom_subject(size: int) -> Subject:
    """Two phantoms on small_64D's gradient scheme: one trains, the other (new geometry) tests, both noise-free."""
    data = load_real_volume("small_64D")
    protocol = Protocol(data.bvals, data.bvecs)
    train = make_phantom(size, protocol, np.random.default_rng(PHANTOM_SEEDS["train"]), snr=None)
    test = make_phantom(size, protocol, np.random.default_rng(PHANTOM_SEEDS["test"]), snr=None)
    return Subject(
        "phantom", data.bvals, data.bvecs, train.dwi[train.mask].astype(np.float64), test.dwi.astype(np.float64),
        test.mask.copy(), f"{size}³ on small_64D's scheme, {test.mask.sum()} test mask voxels",
    )  # fmt: skip


def all_specs(activations: tuple[str, ...], width: int) -> list[DenoiserSpec]:
    """Dense × activations, then SH and Chebyshev × activations × {signal, SH} space."""
    specs = [DenoiserSpec("dense", a, "signal", width) for a in activations]
    for layer in ("sh", "chebyshev"):
        specs += [DenoiserSpec(layer, a, space, width) for a in activations for space in ("signal", "sh")]
    return specs


def tensor_fa_md(signals: np.ndarray, gtab: GradientTable) -> tuple[np.ndarray, np.ndarray]:
    """FA ``(M,)`` and MD ``(M,)`` (mm²/s) of dipy's WLS tensor fit to ``signals`` ``(M, N)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = TensorModel(gtab, fit_method="WLS").fit(np.maximum(signals, TENSOR_FLOOR))
    return np.nan_to_num(fit.fa), np.nan_to_num(fit.md)


def first_peaks(signals: np.ndarray, gtab: GradientTable, response: tuple) -> np.ndarray:
    """First CSD fODF peak ``(M, 3)`` of signals ``(M, N)`` (zeros: no peak)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fodf = fit_csd(np.maximum(signals, 0)[:, None, None, :], gtab, response)
    return find_peaks(fodf)[0][:, 0, 0, 0, :]


class Reference:
    """The clean test WM voxels and their DTI and CSD results, against which every denoised signal is scored."""

    def __init__(self, subject: Subject) -> None:
        gtab = subject.gtab()
        self.gtab, self.dw = gtab, ~gtab.b0s_mask
        clean = subject.volume[subject.test]
        self.s0 = reference_s0(clean, subject.bvals)
        fa, _ = tensor_fa_md(clean / clean[:, gtab.b0s_mask].mean(1, keepdims=True), gtab)
        self.wm = fa > WM_FA
        self.clean = clean[self.wm]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.response, _ = auto_response_ssst(gtab, subject.volume, roi_radii=10, fa_thr=RESPONSE_FA)
        self.fa, self.md = tensor_fa_md(self.clean, gtab)
        self.peaks = first_peaks(self.clean, gtab, self.response)

    def score(self, denoised: np.ndarray) -> dict[str, Any]:
        """Errors of denoised test voxels ``(M_test, N)`` (scanner units) in WM."""
        out = denoised[self.wm]
        fa, md = tensor_fa_md(out, self.gtab)
        peaks = first_peaks(out, self.gtab, self.response)
        both = (np.abs(peaks).sum(1) > 0) & (np.abs(self.peaks).sum(1) > 0)
        cosine = np.clip(np.abs((peaks[both] * self.peaks[both]).sum(1)), 0, 1)
        angles = np.degrees(np.arccos(cosine))
        return {
            "n_wm": int(self.wm.sum()),
            "signal_rmse": float(np.sqrt(np.mean((out[:, self.dw] - self.clean[:, self.dw]) ** 2)) / self.s0),
            "fa_mae": float(np.abs(fa - self.fa).mean()),
            "md_mae": float(np.abs(md - self.md).mean()),  # mm²/s
            "peak_angle_deg": float(angles.mean()) if both.any() else None,
            "peak_voxels": int(both.sum()),
        }


def rotation_error(
    network: SignalDenoiser, reference: Reference, bvecs: np.ndarray, n_rotations: int, seed: int
) -> float:
    """Relative rotation-invariance error of ``network`` on the clean WM test voxels (see the options' docstring)."""
    dw = reference.dw
    directions = bvecs[dw]
    normalised = reference.clean / reference.clean[:, ~dw].mean(1, keepdims=True)
    signals = normalised[:ROTATION_VOXELS, dw]
    fit = sh_fit_matrix(directions, ROTATION_LMAX, SH_BASIS)
    basis = sh_matrix(directions, ROTATION_LMAX, SH_BASIS)
    rng = np.random.default_rng(seed)
    noisy = signals + rng.normal(0.0, ROTATION_NOISE, signals.shape)
    coeffs = noisy @ fit.T  # band-limited, so that the rotated input is exactly the rotated function
    numerator = denominator = 0.0
    for rotation in Rotation.random(n_rotations, random_state=seed).as_matrix().reshape(-1, 3, 3):
        rotate = sh_rotation_matrix(rotation, ROTATION_LMAX, SH_BASIS, SH_BASIS)
        expected = (predict_batched(network, coeffs @ basis.T) @ fit.T) @ rotate.T
        got = predict_batched(network, coeffs @ rotate.T @ basis.T) @ fit.T
        numerator += float(np.sum((got - expected) ** 2))
        denominator += float(np.sum(expected**2))
    return float(np.sqrt(numerator / denominator))


def forward_us_per_voxel(network: SignalDenoiser, inputs: np.ndarray) -> float:
    """Microseconds per voxel of one forward pass over ``TIMING_VOXELS`` voxels (no gradients)."""
    batch = np.resize(inputs, (TIMING_VOXELS, inputs.shape[1]))
    predict_batched(network, batch[:64])  # warm-up
    start = time.perf_counter()
    predict_batched(network, batch)
    return (time.perf_counter() - start) / TIMING_VOXELS * 1e6


def sh_projection(subject: Subject) -> SignalDenoiser:
    """The per-shell SH projection alone: an ``sh`` network whose last layer is zero (its body outputs 0)."""
    network = SignalDenoiser(DenoiserSpec("sh"), subject.bvals, subject.bvecs)
    with torch.no_grad():
        last = network.body[-1]
        last.weight.zero_()
        last.bias.zero_()
    return network.eval()


def evaluate_subject(subject: Subject, args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Every network and every dipy denoiser on ``subject`` at every SNR."""
    reference = Reference(subject)
    rows, networks, timings = [], [], []
    rng = np.random.default_rng(args.seed)
    noisy = {snr: add_rician_noise(subject.volume, snr, reference.s0, rng).astype(np.float64) for snr in args.snrs}

    def score_all(method: str, kind: str, denoise, **extra: Any) -> None:
        for snr, volume in noisy.items():
            rows.append({"subject": subject.name, "method": method, "kind": kind, "snr": snr, **extra,
                         **reference.score(denoise(volume))})  # fmt: skip

    score_all("noisy input", "reference", lambda v: v[subject.test])
    projection = sh_projection(subject)
    score_all(
        "SH projection (lmax 8)", "reference", lambda v: apply_denoiser(projection, v[subject.test], subject.bvals)
    )
    for name, denoiser in DIPY_DENOISERS.items():
        for snr, volume in noisy.items():
            start = time.perf_counter()
            out = denoiser(volume, subject.bvals, None)
            seconds = time.perf_counter() - start
            voxels = int(np.prod(volume.shape[:3]))
            timings.append({"subject": subject.name, "method": name, "snr": snr, "seconds": seconds,
                            "us_per_voxel": seconds / voxels * 1e6})  # fmt: skip
            rows.append({"subject": subject.name, "method": name, "kind": "dipy", "snr": snr,
                         **reference.score(out[subject.test])})  # fmt: skip
    config = DenoiseConfig(
        epochs=args.epochs, batch_size=BATCH_SIZE, lr=LEARNING_RATE, snrs=tuple(args.snrs), copies=args.copies,
        seed=args.seed,
    )  # fmt: skip
    specs = all_specs(args.activations, args.width)
    warm_up = DenoiseConfig(epochs=1, copies=1, snrs=(10.0,))  # torch's first-step costs, outside the timings
    train_denoiser(specs[0], subject.train[:BATCH_SIZE], subject.bvals, subject.bvecs, warm_up)
    for spec in specs:
        logger.info("%s: training %s", subject.name, spec.name)
        start = time.perf_counter()
        network, losses = train_denoiser(spec, subject.train, subject.bvals, subject.bvecs, config)
        seconds = time.perf_counter() - start
        samples = len(subject.train) * len(args.snrs) * args.copies
        inputs = subject.volume[subject.test][:, ~reference.gtab.b0s_mask]
        networks.append({
            "subject": subject.name, "method": spec.name, **spec.to_dict(),
            "parameters": sum(p.numel() for p in network.parameters()), "train_s": seconds,
            "train_step_us_per_voxel": seconds / (args.epochs * samples) * 1e6,
            "forward_us_per_voxel": forward_us_per_voxel(network, inputs), "final_mse": losses[-1],
            "rotation_error": rotation_error(network, reference, subject.bvecs, args.rotations, args.seed),
        })  # fmt: skip
        score_all(spec.name, "network", lambda v, net=network: apply_denoiser(net, v[subject.test], subject.bvals),
                  layer=spec.layer, activation=spec.activation, space=spec.space)  # fmt: skip
    summary = {"name": subject.name, "description": subject.description, "n_train": len(subject.train),
               "n_test": int(subject.test.sum()), "n_wm": int(reference.wm.sum()), "s0": reference.s0}  # fmt: skip
    return {"rows": rows, "networks": networks, "dipy_timings": timings, "subject": summary}


def activation_demo(figure: Any, activations: tuple[str, ...]) -> list[dict[str, Any]]:
    """The seed's Figs. 2-3 from our code: small_64D's highest-FA voxel, its zero-mean SH fit (lmax 8) scaled to
    a maximum of 1 (a pre-activation-like feature), each activation applied to its values (signal space) or to
    its coefficients (SH space), drawn on the sphere; returns each activation's rotation-invariance error in each
    space on that voxel (3 random rotations, the signal-space result projected back to lmax 8)."""
    data = load_real_volume("small_64D")
    gtab = data.gtab()
    voxels = data.dwi.reshape(-1, data.dwi.shape[-1]).astype(np.float64)
    normalised = voxels / voxels[:, gtab.b0s_mask].mean(1, keepdims=True)
    fa, _ = tensor_fa_md(normalised, gtab)
    dw = ~gtab.b0s_mask
    coeffs = sh_fit_matrix(data.bvecs[dw], ROTATION_LMAX, SH_BASIS) @ normalised[int(np.argmax(fa)), dw]
    coeffs[0] = 0.0
    vertices = pixel_centres(FIGURE_NSIDE)
    basis = sh_matrix(vertices, ROTATION_LMAX, SH_BASIS)
    fit = np.linalg.pinv(basis)
    coeffs /= np.abs(basis @ coeffs).max()
    functions = {name: ACTIVATIONS[name]() for name in activations}

    def in_signal(act, c):
        return act(torch.as_tensor(basis @ c)).numpy()

    def in_sh(act, c):
        return basis @ act(torch.as_tensor(c)).numpy()

    values = [[basis @ coeffs, in_signal(act, coeffs), in_sh(act, coeffs)] for act in functions.values()]
    plot_sphere_maps(
        figure, vertices, np.array(values), list(activations), ["input", "in signal space", "in SH space"],
        title="small_64D, highest-FA voxel: zero-mean signal (lmax 8, max 1) through each activation",
    )  # fmt: skip
    out = []
    for name, act in functions.items():
        for space, apply in (("signal", in_signal), ("sh", in_sh)):
            numerator = denominator = 0.0
            for rotation in Rotation.random(3, random_state=0).as_matrix():
                rotate = sh_rotation_matrix(rotation, ROTATION_LMAX, SH_BASIS, SH_BASIS)
                expected = rotate @ (fit @ apply(act, coeffs))
                got = fit @ apply(act, rotate @ coeffs)
                numerator += float(np.sum((got - expected) ** 2))
                denominator += float(np.sum(expected**2))
            out.append({"activation": name, "space": space, "rotation_error": float(np.sqrt(numerator / denominator))})
    return out


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and write its JSON record, page and figure."""
    sizes = QUICK if args.quick else DEFAULTS
    figure, record = start_figure_report(args, {key: sizes[key] for key in SIZES})
    args.snrs, args.rotations = sizes["snrs"], sizes["rotations"]
    args.activations, subjects = sizes["activations"], sizes["subjects"]
    start, cpu = time.perf_counter(), time.process_time()
    record["settings"] = {key: getattr(args, key) for key in SIZES} | {
        "snrs": list(args.snrs), "rotations": args.rotations, "activations": list(args.activations),
        "subjects": list(subjects), "seed": args.seed, "batch_size": BATCH_SIZE, "lr": LEARNING_RATE, "wm_fa": WM_FA,
    }  # fmt: skip
    record["activation_rotation"] = activation_demo(figure, args.activations)
    for key in ("subjects", "rows", "networks", "dipy_timings"):
        record[key] = []
    for name in subjects:
        subject = real_subject(args.seed) if name == "small_64D" else phantom_subject(args.phantom_size)
        result = evaluate_subject(subject, args)
        record["subjects"].append(result.pop("subject"))
        for key, value in result.items():
            record[key] += value
    record["elapsed_s"] = time.perf_counter() - start
    record["cpu_s"] = time.process_time() - cpu
    write_report(args, record, render_markdown(record, figure.name))
    return 0
