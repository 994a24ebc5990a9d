"""How ``equidmri bench table`` runs the methods of :data:`equidmri.methods.METHODS` on a phantom set.

No method is defined here: :func:`run_on_phantoms` turns the phantom set at one angular resolution into peaks of
the validation and test volumes for any registered method.
Iterative methods fit each volume on its own; learned methods train on the train volume and predict the
others (at low resolution they read the low-resolution train volume and reconstruct its high-resolution
series: angular super-resolution, SHD paper §4.2.1). Peaks come back in the world frame, so that they
compare with ``gt_peaks.nii.gz`` directly.
To add a method, register it in :mod:`equidmri.methods.registry`.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from equidmri.bench.options.table import Settings
from equidmri.data import phantom_paths
from equidmri.dmri.io import DWIData, load_dwi, voxel_to_world_rotation
from equidmri.eval.peak_files import FOD_PEAK_THRESHOLD
from equidmri.methods import Method, get_method
from equidmri.recon.model import FODFFit, SHDModel
from equidmri.recon.pipeline import PreparedData, prepare

EVAL_VOLUMES = ("val", "test")
LEARNED_SETTINGS = ("epochs", "patch_size", "widths")  # the Settings fields a learned method depends on
LEARNED_VOLUMES = ("train", *EVAL_VOLUMES)  # learned methods also deconvolve their training volume (overfitting)
ITERATIVE_SETTINGS = {"rumba_iters": "n_iter"}  # Settings field -> option of the iterative methods that take it

__all__ = ["Run", "Settings", "VolumeSet", "result_settings", "run_on_phantoms", "train_on_volumes"]


@dataclass(frozen=True, eq=False)
class Run:
    """Peaks of one method on the evaluation volumes (learned methods: also on their training volume):
    ``peaks[volume] = (dirs (X,Y,Z,P,3) world, values)``, ``train_s`` (None for iterative methods) and
    ``infer_s`` of the test volume, seconds."""

    peaks: dict[str, tuple[np.ndarray, np.ndarray]]
    train_s: float | None
    infer_s: float


class VolumeSet:
    """Loaded and prepared phantom volumes (:func:`equidmri.recon.pipeline.prepare`), cached per resolution."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self._cache: dict[tuple[str, str], PreparedData] = {}

    def get(self, volume: str, resolution: str) -> PreparedData:
        """The prepared ``volume`` (train, val, test) at ``resolution`` (high, low), mask from the phantom."""
        key = (volume, resolution)
        if key not in self._cache:
            self._cache[key] = prepare(load_dwi(*phantom_paths(self.data_dir, volume, resolution)))
        return self._cache[key]


def _to_world(peaks: tuple[np.ndarray, np.ndarray], data: DWIData) -> tuple[np.ndarray, np.ndarray]:
    dirs, values = peaks
    return dirs @ voxel_to_world_rotation(data.affine).T, values


def _sh_peaks(fit: FODFFit, prepared: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """World-frame peaks of a fit (at its output degree), down to the lowest evaluation threshold."""
    return _to_world(fit.peaks(relative_peak_threshold=FOD_PEAK_THRESHOLD), prepared.data)


def _accepts(method: Method, option: str) -> bool:
    return option in inspect.signature(method.model_class).parameters


def result_settings(method: Method, settings: Settings) -> dict[str, Any]:
    """The fields of ``settings`` that change ``method``'s result (learned methods: epochs, patch size and
    widths; iterative ones: those of :data:`ITERATIVE_SETTINGS` they take), JSON-friendly."""
    if method.learned:
        fields = LEARNED_SETTINGS
    else:
        fields = tuple(name for name, option in ITERATIVE_SETTINGS.items() if _accepts(method, option))
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in ((name, getattr(settings, name)) for name in fields)
    }


def _iterative(method: Method, volumes: VolumeSet, resolution: str, settings: Settings) -> Run:
    """Fit each evaluation volume on its own; the time (fit and peaks) is that of the test volume."""
    options = {
        option: getattr(settings, name) for name, option in ITERATIVE_SETTINGS.items() if _accepts(method, option)
    }
    if _accepts(method, "threads"):
        options["threads"] = settings.threads
    peaks, seconds = {}, 0.0
    for name in EVAL_VOLUMES:
        prepared = volumes.get(name, resolution)
        model = get_method(method.name, prepared.gtab, prepared.responses, **options)
        start = time.perf_counter()
        peaks[name] = _sh_peaks(model.fit(prepared.data.dwi, prepared.mask), prepared)
        seconds = time.perf_counter() - start
    return Run(peaks=peaks, train_s=None, infer_s=seconds)


def train_on_volumes(method: Method, volumes: VolumeSet, resolution: str, seed: int, settings: Settings) -> SHDModel:
    """Train a learned method on the train volume: the network reads it at ``resolution`` and reconstructs its
    high resolution series through the responses of that series (at low resolution: angular
    super-resolution, SHD paper §4.2.1)."""
    source, target = volumes.get("train", resolution), volumes.get("train", "high")
    network = get_method(
        method.name,
        target.gtab,
        target.responses,
        input_gtab=source.gtab,
        seed=seed,
        epochs=settings.epochs,
        patch_size=settings.patch_size,
        widths=settings.widths,
    )
    model = network.build()
    model.train_network(target.data.dwi, target.mask, input_dwi=source.data.dwi)
    return model


def _learned(method: Method, volumes: VolumeSet, resolution: str, seed: int, settings: Settings) -> Run:
    """Train on the train volume (:func:`train_on_volumes`), predict every volume at the run's resolution."""
    start = time.perf_counter()
    model = train_on_volumes(method, volumes, resolution, seed, settings)
    train_s = time.perf_counter() - start
    peaks, seconds = {}, 0.0
    for name in LEARNED_VOLUMES:
        prepared = volumes.get(name, resolution)
        start = time.perf_counter()
        fit = model.predict(prepared.data.dwi, prepared.mask, s0_wm=float(prepared.responses.s0[0]))
        peaks[name] = _sh_peaks(fit, prepared)
        seconds = time.perf_counter() - start
    return Run(peaks=peaks, train_s=train_s, infer_s=seconds)


def run_on_phantoms(method: Method, volumes: VolumeSet, resolution: str, seed: int, settings: Settings) -> Run:
    """Peaks of one method on the phantom set at ``resolution`` (``seed``: learned methods only)."""
    if method.learned:
        return _learned(method, volumes, resolution, seed, settings)
    return _iterative(method, volumes, resolution, settings)
