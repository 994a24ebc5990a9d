"""The deconvolution pipeline behind the command line: prepare a volume, deconvolve it, write the results.

Three steps, so that a caller can validate everything before it creates an output directory:

1. :func:`prepare` takes a loaded :class:`~equidmri.dmri.io.DWIData`, computes the brain mask when none
   was given, groups the shells and estimates the tissue responses (all cheap and all able to fail).
2. :func:`run_deconv` trains an :class:`~equidmri.recon.model.SHDModel` on the volume (or
   :func:`run_predict` applies a trained one, :func:`run_method` fits any other method of
   :mod:`equidmri.methods`) and derives peaks and DTI FA: a :class:`DeconvResult`.
3. :func:`write_outputs` writes the NIfTI and JSON files atomically (MRtrix3 conventions, see
   :mod:`equidmri.dmri.io`).

The QC figure and agreement metrics live in ``viz`` and ``eval``, which the library does not import;
the command line adds them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dipy.core.gradients import GradientTable

from equidmri.dmri.gradients import Shells, check_shell_sampling, find_shells
from equidmri.dmri.io import DWIData, save_fod, save_json, save_nifti, save_peaks
from equidmri.dmri.mask import compute_mask
from equidmri.dmri.response import TissueResponses, estimate_responses
from equidmri.recon.checkpoint import load_checkpoint
from equidmri.recon.config import REFINE_STEPS
from equidmri.recon.infer import DEFAULT_TILE
from equidmri.recon.model import FODFFit, NetworkConfig, SHDModel
from equidmri.recon.train import TrainConfig

logger = logging.getLogger(__name__)

TIMING_DECIMALS = 3  # seconds are rounded to milliseconds in the timings
OUTPUT_NAMES = {  # file of each output inside the output directory
    "fod": "fod.nii.gz",
    "peaks": "peaks.nii.gz",
    "peak_values": "peak_values.nii.gz",
    "fractions": "fractions.nii.gz",
    "response": "response.json",
    "checkpoint": "model.pt",
    "qc": "qc.png",
    "run": "run.json",
}

__all__ = [
    "OUTPUT_NAMES",
    "DeconvResult",
    "PreparedData",
    "checkpoint_input_shells",
    "checkpoint_network",
    "prepare",
    "run_deconv",
    "run_method",
    "run_predict",
    "run_summary",
    "timed",
    "write_outputs",
]


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Record the wall-clock seconds of the ``with`` block as ``timings[stage]``."""
    start = time.perf_counter()
    yield
    timings[stage] = round(time.perf_counter() - start, TIMING_DECIMALS)


@dataclass(frozen=True, eq=False)
class PreparedData:
    """A loaded volume with its mask, shells and tissue responses.

    Attributes
    ----------
    data : DWIData
        The acquisition (voxel-axis frame).
    gtab : GradientTable
        ``data.gtab()``.
    mask : ndarray, shape ``(X, Y, Z)`` bool
        Voxels to deconvolve (never empty; excludes voxels that held NaN/Inf).
    mask_source : str
        ``"given"`` or ``"computed"`` (:func:`equidmri.dmri.mask.compute_mask`).
    shells : Shells
        Diffusion-weighted shells.
    responses : TissueResponses
        Estimated inside ``mask``.
    timings : dict of str to float
        Seconds spent on ``"mask"`` and ``"response"``.
    """

    data: DWIData
    gtab: GradientTable
    mask: np.ndarray
    mask_source: str
    shells: Shells
    responses: TissueResponses
    timings: dict[str, float]


def prepare(data: DWIData) -> PreparedData:
    """Mask (given or computed), shells and tissue responses of a volume.

    Parameters
    ----------
    data : DWIData
        From :func:`equidmri.dmri.io.load_dwi`; ``data.mask`` is used when present.

    Returns
    -------
    PreparedData

    Raises
    ------
    ValueError
        If the mask holds no voxel, the b-values do not form shells (q-space sampling, or a shell with fewer
        than 6 directions: :func:`equidmri.dmri.gradients.check_shell_sampling`), or the responses cannot be
        estimated (too few WM voxels, no GM/CSF voxel: see :func:`equidmri.dmri.response.estimate_responses`).
    """
    timings: dict[str, float] = {}
    gtab = data.gtab()
    with timed(timings, "mask"):
        if data.mask is None:
            mask, source = compute_mask(data.dwi, gtab, data.valid), "computed"
        else:
            mask, source = data.mask, "given"
    if not mask.any():
        raise ValueError(f"the {source} mask holds no voxel (NaN/Inf voxels are excluded from it)")
    logger.info(
        "%s mask: %d of %d voxels",
        "no mask given, computed a" if source == "computed" else "given",
        int(mask.sum()),
        mask.size,
    )
    shells = find_shells(data.bvals)
    check_shell_sampling(shells)
    with timed(timings, "response"):
        responses = estimate_responses(data.dwi, gtab, mask, shells)
    logger.info("responses %s on shells %s s/mm²", responses.tissues, np.round(shells.bvals).tolist())
    return PreparedData(
        data=data, gtab=gtab, mask=mask, mask_source=source, shells=shells, responses=responses, timings=timings
    )


@dataclass(frozen=True, eq=False)
class DeconvResult:
    """Everything a deconvolution produced, voxel-axis frame.

    Attributes
    ----------
    fit : FODFFit
        fODF SH (``descoteaux07``), tissue fractions, mask and loss history (empty for a prediction and for
        the iterative methods).
    method : str
        Name of the method (:mod:`equidmri.methods`) that produced ``fit``.
    network : NetworkConfig or None
        Architecture of a learned method; None for the iterative methods.
    train_config : TrainConfig or None
        Its training settings (a prediction reports those of the checkpoint); None for the iterative methods.
    responses : TissueResponses or None
        Responses the method deconvolved with; None when it estimated its own (MRtrix3).
    shell_lmax : tuple of int
        SH degree of each shell's network input fit (empty for the iterative methods).
    peak_dirs : ndarray, shape ``(X, Y, Z, P, 3)``
        Unit peak directions of the fODF at ``fit.lmax``, zeros where there is no peak.
    peak_values : ndarray, shape ``(X, Y, Z, P)``
        Peak amplitudes, fODF units.
    trained : bool
        True when the method was fitted to this volume (``run_deconv``, ``run_method``), False for a
        prediction with a trained network.
    timings : dict of str to float
        Seconds per stage.
    """

    fit: FODFFit
    method: str
    network: NetworkConfig | None
    train_config: TrainConfig | None
    responses: TissueResponses | None
    shell_lmax: tuple[int, ...]
    peak_dirs: np.ndarray
    peak_values: np.ndarray
    trained: bool
    timings: dict[str, float]


def _finish(
    fit: FODFFit,
    prepared: PreparedData,
    timings: dict[str, float],
    peak_kwargs: dict[str, Any],
    progress: bool,
    **described: Any,
) -> DeconvResult:
    """The peaks (at ``fit.lmax``) of a fit, timed as ``peaks``, in ``torch.get_num_threads()`` worker processes
    for a large mask (:func:`~equidmri.dmri.peaks.find_peaks`); ``described`` are the other fields of
    :class:`DeconvResult`."""
    with timed(timings, "peaks"):
        peak_dirs, peak_values = fit.peaks(progress=progress, jobs=torch.get_num_threads(), **peak_kwargs)
    return DeconvResult(
        fit=fit,
        peak_dirs=peak_dirs,
        peak_values=peak_values,
        timings={**prepared.timings, **timings},
        **described,
    )


def _network_fields(model: SHDModel, method: str | None) -> dict[str, Any]:
    return {
        "method": method or model.network_config.model.upper(),
        "network": model.network_config,
        "train_config": model.train_config,
        "responses": model.responses,
        "shell_lmax": tuple(model.sampler.shell_lmax),
    }


def run_deconv(
    model: SHDModel,
    prepared: PreparedData,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = False,
    tile: int = DEFAULT_TILE,
    refine_steps: int = REFINE_STEPS,
    refine_tv: float | None = None,
    refine_precision: str = "auto",
    peak_kwargs: dict[str, Any] | None = None,
    method: str | None = None,
) -> DeconvResult:
    """Train ``model`` unsupervised on the prepared volume, deconvolve it and find its peaks.

    Parameters
    ----------
    model : SHDModel
        Built for ``prepared.gtab`` and ``prepared.responses``.
    prepared : PreparedData
    checkpoint_path : path, optional
        Where training writes its checkpoint (``model.pt``).
    resume : bool
        Continue the training stored at ``checkpoint_path``.
    progress : bool
        Show progress bars.
    tile : int
        Inference tile edge, voxels.
    refine_steps : int
        Adam steps of the per-voxel refinement of the network's answer (:meth:`SHDModel.fit`).
    refine_tv : float, optional
        Weight of the refinement's spatial (TV) term (:meth:`SHDModel.fit`; 0 refines each voxel alone; default:
        with the WM alone, scaled to the number of fitted volumes;
        :meth:`~equidmri.recon.refine.FODFRefiner.default_tv`).
    refine_precision : str
        Of the refinement's penalty products (:meth:`SHDModel.fit`).
    peak_kwargs : dict, optional
        ``relative_peak_threshold``, ``min_separation_angle`` (degrees), ``npeaks`` for
        :func:`equidmri.dmri.peaks.find_peaks`.
    method : str, optional
        Name of the method the model implements (default: its architecture's name in capitals).

    Returns
    -------
    DeconvResult
        ``timings`` holds ``mask``, ``response``, ``fit`` (training and inference), ``peaks``.

    Raises
    ------
    TrainingDivergedError
        If the loss became non-finite (the last good checkpoint is kept).
    FileNotFoundError
        If ``resume`` and there is no checkpoint.
    """
    timings: dict[str, float] = {}
    with timed(timings, "fit"):
        fit = model.fit(
            prepared.data.dwi,
            prepared.mask,
            checkpoint_path=checkpoint_path,
            resume=resume,
            progress=progress,
            tile=tile,
            refine_steps=refine_steps,
            refine_tv=refine_tv,
            refine_precision=refine_precision,
        )
    return _finish(fit, prepared, timings, peak_kwargs or {}, progress, trained=True, **_network_fields(model, method))


def run_predict(
    model: SHDModel,
    prepared: PreparedData,
    *,
    progress: bool = False,
    tile: int = DEFAULT_TILE,
    refine_steps: int = REFINE_STEPS,
    refine_tv: float | None = None,
    refine_precision: str = "auto",
    peak_kwargs: dict[str, Any] | None = None,
    method: str | None = None,
) -> DeconvResult:
    """Deconvolve the prepared volume with a trained model (no training), then find its peaks.

    The signal is normalised by the *new* volume's WM b=0 response, ``prepared.responses.s0[0]``.
    Parameters as :func:`run_deconv`; ``timings`` holds ``predict`` instead of ``fit``.
    """
    timings: dict[str, float] = {}
    with timed(timings, "predict"):
        fit = model.predict(
            prepared.data.dwi,
            prepared.mask,
            s0_wm=float(prepared.responses.s0[0]),
            tile=tile,
            progress=progress,
            refine_steps=refine_steps,
            refine_tv=refine_tv,
            refine_precision=refine_precision,
        )
    return _finish(fit, prepared, timings, peak_kwargs or {}, progress, trained=False, **_network_fields(model, method))


def run_method(
    model: Any,
    prepared: PreparedData,
    *,
    method: str,
    progress: bool = False,
    peak_kwargs: dict[str, Any] | None = None,
    responses_used: bool = True,
) -> DeconvResult:
    """Fit an iterative method (a Model of :mod:`equidmri.methods` with ``fit(dwi, mask) -> FODFFit``) to the
    prepared volume, then find its peaks.

    Parameters
    ----------
    model
        Built for ``prepared.gtab`` (and ``prepared.responses`` when ``responses_used``).
    method : str
        Its registered name.
    responses_used : bool
        False when the method estimates its own responses (MRtrix3): ``response.json`` is then not written.

    Returns
    -------
    DeconvResult
        ``timings`` holds ``mask``, ``response``, ``fit``, ``peaks``.
    """
    timings: dict[str, float] = {}
    with timed(timings, "fit"):
        fit = model.fit(prepared.data.dwi, prepared.mask)
    return _finish(
        fit,
        prepared,
        timings,
        peak_kwargs or {},
        progress,
        trained=True,
        method=method,
        network=None,
        train_config=None,
        responses=prepared.responses if responses_used else None,
        shell_lmax=(),
    )


def checkpoint_network(path: str | os.PathLike) -> NetworkConfig:
    """Architecture stored in a checkpoint (what ``--resume`` must rebuild).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a readable equidmri checkpoint.
    """
    return NetworkConfig.from_dict(load_checkpoint(path)["meta"]["network"])


def checkpoint_input_shells(path: str | os.PathLike) -> np.ndarray:
    """Diffusion-weighted shells (s/mm²) of the volumes a checkpoint's network reads (what ``predict`` needs).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a readable equidmri checkpoint.
    """
    meta = load_checkpoint(path)["meta"]
    return np.asarray(meta.get("input_shells", meta["shells"]), dtype=np.float64)


def write_outputs(
    out_dir: str | os.PathLike, result: DeconvResult, affine: np.ndarray, *, force: bool = False
) -> list[Path]:
    """Write ``fod``, ``peaks``, ``peak_values``, ``fractions`` and (when trained) ``response.json``.

    Parameters
    ----------
    out_dir : path
        Existing directory; file names are :data:`OUTPUT_NAMES`.
    result : DeconvResult
    affine : ndarray, shape ``(4, 4)``
        Voxel-to-world affine of the input (mm); every image gets it.
    force : bool
        Overwrite existing files.

    Returns
    -------
    list of Path
        The written files. ``fod.nii.gz``: ``(X, Y, Z, 45)`` MRtrix3 ``tournier07`` SH, world frame;
        ``peaks.nii.gz``: ``(X, Y, Z, 3P)`` world-frame unit vectors; ``peak_values.nii.gz``:
        ``(X, Y, Z, P)``; ``fractions.nii.gz``: ``(X, Y, Z, T)`` in ``result.fit.tissues`` order.

    Raises
    ------
    FileExistsError
        If an output exists and not ``force``.
    """
    out = Path(out_dir)
    paths = [
        save_fod(out / OUTPUT_NAMES["fod"], result.fit.shm_coeff, affine, force=force),
        *save_peaks(
            out / OUTPUT_NAMES["peaks"],
            out / OUTPUT_NAMES["peak_values"],
            result.peak_dirs,
            result.peak_values,
            affine,
            force=force,
        ),
        save_nifti(out / OUTPUT_NAMES["fractions"], result.fit.fractions, affine, force=force),
    ]
    if result.trained and result.responses is not None:
        paths.append(save_json(out / OUTPUT_NAMES["response"], result.responses.to_dict(), force=force))
    return paths


def run_summary(prepared: PreparedData, result: DeconvResult) -> dict[str, Any]:
    """JSON-friendly description of a run (the library's part of ``run.json``).

    Returns
    -------
    dict
        ``data_shape``, ``mask_voxels``, ``mask_source``, ``nonfinite_voxels``, ``shells`` (s/mm²),
        ``shell_lmax``, ``tissues``, ``method``, ``network`` and ``train`` (None for iterative methods),
        ``epochs_trained``, ``final_loss`` (the last epoch's loss terms, None for a prediction), ``history``
        (loss terms per epoch), ``refinement`` (a learned method's refinement steps, TV weight and why; None for
        iterative methods), ``timings`` (s).
    """
    history = result.fit.history
    return {
        "data_shape": list(prepared.data.dwi.shape),
        "mask_voxels": int(prepared.mask.sum()),
        "mask_source": prepared.mask_source,
        "nonfinite_voxels": prepared.data.n_nonfinite_voxels,
        "shells": prepared.shells.bvals.tolist(),
        "shell_lmax": list(result.shell_lmax),
        "tissues": list(result.fit.tissues),
        "method": result.method,
        "network": None if result.network is None else result.network.to_dict(),
        "train": None if result.train_config is None else result.train_config.to_dict(),
        "epochs_trained": len(history),
        "final_loss": history[-1] if history else None,
        "history": history,
        "refinement": result.fit.refinement,
        "timings": dict(result.timings),
    }
