"""The methods of ``equidmri bench table``: one :class:`Method` entry each, in :data:`METHODS`.

A method turns the phantom set at one angular resolution into peaks of the validation and test volumes.
Iterative methods fit each volume on its own; learned methods train on the train volume and predict the
others (at low resolution they read the low-resolution train volume and reconstruct its high-resolution
series: angular super-resolution, SHD paper §4.2.1). Peaks come back in the world frame, so that they
compare with ``gt_peaks.nii.gz`` directly.
To add a method, append a :class:`Method` to :data:`METHODS`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from dipy.data import get_sphere
from dipy.reconst.rumba import RumbaSDModel

from equidmri.dmri.baselines import fit_csd, fit_msmt_csd
from equidmri.dmri.io import DWIData, load_dwi, load_nifti_volume, voxel_to_world_rotation
from equidmri.dmri.peaks import find_peaks
from equidmri.eval.peak_files import FOD_PEAK_THRESHOLD, peaks_from_fod
from equidmri.recon.model import NetworkConfig, SHDModel
from equidmri.recon.losses import LossWeights
from equidmri.recon.pipeline import PreparedData, prepare
from equidmri.recon.train import TrainConfig
from equidmri.sims.dataset import series_paths
from equidmri.sphere.sh import sh_fit_matrix

EVAL_VOLUMES = ("val", "test")
LEARNED_SETTINGS = ("epochs", "patch_size", "widths")  # the Settings fields a learned method depends on
LEARNED_VOLUMES = ("train", *EVAL_VOLUMES)  # learned methods also deconvolve their training volume (overfitting)
RUMBA_SPHERE = "repulsion724"  # dipy RUMBA's default sphere
RUMBA_SH_LMAX = 12  # SH degree fitted to RUMBA's fODF on the sphere before the common peak search

__all__ = ["METHODS", "Method", "Run", "Settings", "VolumeSet"]


@dataclass(frozen=True)
class Settings:
    """Run settings: training ``epochs``, ``patch_size`` and network ``widths`` of the learned methods,
    ``rumba_iters`` iterations of RUMBA-SD, ``threads`` for MRtrix3."""

    epochs: int = 10  # at 40³ an epoch is 48 steps of one 8³ patch; SHD needs hundreds of steps
    patch_size: int = 8
    widths: tuple[int, ...] = (8, 16, 32, 64)
    rumba_iters: int = 100
    threads: int = 2


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
            folder = self.data_dir / volume
            self._cache[key] = prepare(load_dwi(*series_paths(folder, resolution), folder / "mask.nii.gz"))
        return self._cache[key]

    def paths(self, volume: str, resolution: str) -> tuple[Path, Path, Path, Path]:
        """``(dwi, bvals, bvecs, mask)`` files."""
        return (*series_paths(self.data_dir / volume, resolution), self.data_dir / volume / "mask.nii.gz")


def _to_world(peaks: tuple[np.ndarray, np.ndarray], data: DWIData) -> tuple[np.ndarray, np.ndarray]:
    dirs, values = peaks
    return dirs @ voxel_to_world_rotation(data.affine).T, values


def _sh_peaks(fodf_sh: np.ndarray, prepared: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """World-frame peaks of a voxel-frame ``descoteaux07`` fODF, down to the lowest evaluation threshold."""
    return _to_world(find_peaks(fodf_sh, prepared.mask, relative_peak_threshold=FOD_PEAK_THRESHOLD), prepared.data)


def _per_volume(fit: Callable[[PreparedData, Settings], np.ndarray]) -> Callable[[VolumeSet, str, int, Settings], Run]:
    """An iterative method: ``fit(prepared, settings) -> fodf_sh`` (voxel frame, ``descoteaux07``) on each
    evaluation volume; the time is that of the test volume."""
    def run(volumes: VolumeSet, resolution: str, seed: int, settings: Settings) -> Run:
        peaks, seconds = {}, 0.0
        for name in EVAL_VOLUMES:
            prepared = volumes.get(name, resolution)
            start = time.perf_counter()
            peaks[name] = _sh_peaks(fit(prepared, settings), prepared)
            seconds = time.perf_counter() - start
        return Run(peaks=peaks, train_s=None, infer_s=seconds)
    return run


def _csd(lmax: int) -> Callable[[PreparedData, Settings], np.ndarray]:
    def fit(prepared: PreparedData, settings: Settings) -> np.ndarray:
        return fit_csd(prepared.data.dwi, prepared.gtab, prepared.responses.dipy_wm_response(), prepared.mask,
                       lmax=lmax)
    return fit


def _msmt(prepared: PreparedData, settings: Settings) -> np.ndarray:
    """dipy MSMT-CSD (lmax 8) with the phantom's WM, GM and CSF responses (high resolution only: it needs
    every shell)."""
    return fit_msmt_csd(prepared.data.dwi, prepared.gtab, prepared.responses, prepared.mask)


@lru_cache(maxsize=2)
def _rumba_to_sh() -> tuple[Any, np.ndarray]:
    sphere = get_sphere(name=RUMBA_SPHERE)
    return sphere, sh_fit_matrix(sphere.vertices, RUMBA_SH_LMAX, "descoteaux07")


def _rumba(use_tv: bool) -> Callable[[PreparedData, Settings], np.ndarray]:
    """RUMBA-SD (dipy, global fit, ``use_tv`` for RUMBA-SD+TV) with the WM response of the lowest shell;
    its fODF on the sphere is fitted with SH of degree ``RUMBA_SH_LMAX`` for the common peak search."""
    def fit(prepared: PreparedData, settings: Settings) -> np.ndarray:
        sphere, to_sh = _rumba_to_sh()
        model = RumbaSDModel(prepared.gtab, wm_response=prepared.responses.evals[0, 0], n_iter=settings.rumba_iters,
                             voxelwise=False, use_tv=use_tv, sphere=sphere)
        fodf = model.fit(prepared.data.dwi, mask=prepared.mask).odf(sphere=sphere)
        return np.where(prepared.mask[..., None], fodf @ to_sh.T, 0.0)
    return fit


def _call(command: list[str]) -> None:
    """Run an MRtrix3 command; raise ``RuntimeError`` with its last error line if it fails."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise RuntimeError(f"{command[0]} {command[1]}: {lines[-1] if lines else f'exit {done.returncode}'}")


def _mrtrix(algorithm: str) -> Callable[[VolumeSet, str, int, Settings], Run]:
    """MRtrix3 ``dwi2response`` (tournier for csd, dhollander for msmt_csd) and ``dwi2fod``; peaks of its
    world-frame ``tournier07`` WM fODF."""
    def run(volumes: VolumeSet, resolution: str, seed: int, settings: Settings) -> Run:
        peaks, seconds = {}, 0.0
        for name in EVAL_VOLUMES:
            dwi, bvals, bvecs, mask = volumes.paths(name, resolution)
            common = ["-fslgrad", str(bvecs), str(bvals), "-mask", str(mask), "-nthreads", str(settings.threads),
                      "-quiet", "-force"]
            with tempfile.TemporaryDirectory(prefix="equidmri-mrtrix-") as tmp:
                out = Path(tmp)
                start = time.perf_counter()
                if algorithm == "csd":
                    shells = ["-shells", str(int(round(volumes.get(name, resolution).shells.bvals[0])))]
                    _call(["dwi2response", "tournier", str(dwi), str(out / "wm.txt"), *common, *shells,
                           "-scratch", tmp])
                    _call(["dwi2fod", "csd", str(dwi), str(out / "wm.txt"), str(out / "wm.nii.gz"), *common, *shells])
                else:
                    tissues = [str(out / f"{t}.txt") for t in ("wm", "gm", "csf")]
                    _call(["dwi2response", "dhollander", str(dwi), *tissues, *common, "-scratch", tmp])
                    outputs = [str(out / f"{t}{suffix}") for t in ("wm", "gm", "csf") for suffix in (".txt", ".nii.gz")]
                    _call(["dwi2fod", "msmt_csd", str(dwi), *outputs, *common])
                fodf_sh, _ = load_nifti_volume(out / "wm.nii.gz")
                peaks[name] = peaks_from_fod(np.asarray(fodf_sh), "tournier07", volumes.get(name, resolution).mask)
                seconds = time.perf_counter() - start
        return Run(peaks=peaks, train_s=None, infer_s=seconds)
    return run


def _train(volumes: VolumeSet, resolution: str, network: NetworkConfig, config: TrainConfig) -> SHDModel:
    """Train on the train volume: the network reads it at ``resolution`` and reconstructs its high
    resolution series through the responses of that series (at low resolution: angular
    super-resolution, SHD paper §4.2.1)."""
    source, target = volumes.get("train", resolution), volumes.get("train", "high")
    model = SHDModel(target.gtab, target.responses, network, config, input_gtab=source.gtab)
    model.train_network(target.data.dwi, target.mask, input_dwi=source.data.dwi)
    return model


def _network(model: str, tv: bool) -> Callable[[VolumeSet, str, int, Settings], Run]:
    """Train ``model`` (registry name) unsupervised on the train volume (see :func:`_train`), predict the
    val and test volumes at the run's resolution."""
    def run(volumes: VolumeSet, resolution: str, seed: int, settings: Settings) -> Run:
        weights = LossWeights() if tv else LossWeights(tv=0.0)
        config = TrainConfig(epochs=settings.epochs, patch_size=settings.patch_size, seed=seed, weights=weights)
        network = NetworkConfig(model=model, widths=settings.widths)
        start = time.perf_counter()
        shd = _train(volumes, resolution, network, config)
        train_s = time.perf_counter() - start
        peaks, seconds = {}, 0.0
        for name in LEARNED_VOLUMES:
            prepared = volumes.get(name, resolution)
            start = time.perf_counter()
            fit = shd.predict(prepared.data.dwi, prepared.mask, s0_wm=float(prepared.responses.s0[0]))
            peaks[name] = _sh_peaks(fit.shm_coeff, prepared)
            seconds = time.perf_counter() - start
        return Run(peaks=peaks, train_s=train_s, infer_s=seconds)
    return run


@dataclass(frozen=True)
class Method:
    """A table row: ``name``, whether it is ``learned`` (seeds matter), the ``resolutions`` it runs at, and
    ``run(volumes, resolution, seed, settings) -> Run``; ``available()`` says whether it can run here and
    ``result_settings`` which settings its result depends on."""

    name: str
    learned: bool
    run: Callable[[VolumeSet, str, int, Settings], Run]
    resolutions: tuple[str, ...] = ("high", "low")
    requires: str | None = None  # an executable that must be on PATH
    uses: tuple[str, ...] = ()  # the Settings fields that change its result (default: learned or none)

    def result_settings(self, settings: Settings) -> dict[str, Any]:
        """The fields of ``settings`` that change this method's result (``uses``; learned methods: epochs,
        patch size and widths), JSON-friendly."""
        fields = self.uses or (LEARNED_SETTINGS if self.learned else ())
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in ((name, getattr(settings, name)) for name in fields)}

    def available(self) -> bool:
        """True unless ``requires`` names a missing executable."""
        return self.requires is None or shutil.which(self.requires) is not None


METHODS: list[Method] = [
    Method("CSD (lmax 8)", False, _per_volume(_csd(8))),
    Method("CSD (lmax 6)", False, _per_volume(_csd(6))),
    Method("MSMT-CSD", False, _per_volume(_msmt), resolutions=("high",)),
    Method("RUMBA-SD", False, _per_volume(_rumba(False)), uses=("rumba_iters",)),
    Method("RUMBA-SD+TV", False, _per_volume(_rumba(True)), uses=("rumba_iters",)),
    Method("MRtrix3 CSD", False, _mrtrix("csd"), requires="dwi2fod"),
    Method("MRtrix3 MSMT-CSD", False, _mrtrix("msmt_csd"), resolutions=("high",), requires="dwi2fod"),
    Method("MLP", True, _network("mlp", tv=False)),
    Method("CNN", True, _network("cnn", tv=False)),
    Method("CNN-TV", True, _network("cnn", tv=True)),
    Method("ESD", True, _network("esd", tv=False)),
    Method("Concat-ESD", True, _network("concat-esd", tv=False)),
    Method("RT-ESD", True, _network("rt-esd", tv=False)),
    Method("SHD", True, _network("shd", tv=False)),
    Method("SHD-TV", True, _network("shd-tv", tv=True)),
]
