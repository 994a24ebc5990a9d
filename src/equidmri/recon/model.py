"""dipy-style Model/Fit API of the spatio-hemispherical deconvolution (SHD, SHD-TV).

``SHDModel(gtab, responses).fit(dwi, mask)`` trains the network unsupervised on that volume and returns
an immutable :class:`FODFFit`; ``SHDModel.from_checkpoint(...).predict(dwi, mask)`` applies a trained
network to another volume with the same shells (amortised inference). Both refine the network's answer per
voxel under the same loss before returning it (``refine_steps``, :mod:`equidmri.recon.refine`; 0 returns the
network's answer as it is). With ``input_gtab`` the network reads
a low angular resolution acquisition and is trained to reconstruct the full one (angular super-resolution,
SHD paper §4.2.1).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from dipy.core.gradients import GradientTable
from dipy.core.sphere import Sphere

from equidmri import __version__
from equidmri.dmri.gradients import B0_THRESHOLD, SHELL_TOL, Shells, find_shells, make_gtab
from equidmri.dmri.peaks import find_peaks
from equidmri.dmri.preprocess import SphereSampler, build_sampler
from equidmri.dmri.response import TissueResponses
from equidmri.nn.models.registry import build_model
from equidmri.recon.checkpoint import load_checkpoint
from equidmri.recon.config import (
    DEFAULT_TILE,
    LEGACY_ARCHITECTURES,
    REFINE_STEPS,
    NetworkConfig,
    TrainConfig,
)
from equidmri.recon.forward import FODF_LMAX, SignalModel
from equidmri.recon.infer import predict_volume
from equidmri.recon.inputs import SampledInputs
from equidmri.recon.refine import FODFRefiner
from equidmri.recon.train import train
from equidmri.runtime import product_dtype
from equidmri.sphere.sh import check_lmax, lmax_from_n_coeffs, n_coeffs, sh_matrix

logger = logging.getLogger(__name__)

__all__ = [  # NetworkConfig and LEGACY_ARCHITECTURES live in equidmri.recon.config (torch-free)
    "LEGACY_ARCHITECTURES",
    "OUTPUT_LMAX",
    "FODFFit",
    "NetworkConfig",
    "SHDModel",
    "check_has_b0",
    "check_same_shells",
    "on_volume",
]

OUTPUT_LMAX = 8  # SH degree of fod.nii.gz and of the peaks (MRtrix default lmax)


@dataclass(frozen=True, eq=False)
class FODFFit:
    """Result of a deconvolution, voxel-axis frame.

    Every method of :mod:`equidmri.methods` returns one (the networks, dipy's and MRtrix3's methods).

    Attributes
    ----------
    fodf_sh : ndarray, shape ``(X, Y, Z, K)``
        WM fODF, SH basis ``descoteaux07`` (dipy, ``legacy=False``), of any even degree >= ``lmax`` (the
        networks: lmax 18, K = 190, float32, or 8 after their per-voxel refinement); zero outside the mask.
    fractions : ndarray, shape ``(X, Y, Z, T)``
        Tissue fractions in ``tissues`` order (WM = fODF integral), relative to the WM b=0 response.
    tissues : tuple of str
    mask : ndarray, shape ``(X, Y, Z)`` bool
    history : list of dict
        Loss terms per training epoch (empty for a prediction and for iterative methods).
    sh_basis : str
    lmax : int
        Degree of the method's output: :attr:`shm_coeff`, the peaks and ``fod.nii.gz`` (default 8).
    refinement : dict or None
        A learned method's refinement of the network's answer: ``steps`` (Adam steps), ``tv`` (the spatial term's
        weight), ``reason`` (why that weight) and ``precision`` (the dtype of its penalty products, ``"float32"``
        or ``"bfloat16"``); None for the iterative methods.
    """

    fodf_sh: np.ndarray
    fractions: np.ndarray
    tissues: tuple[str, ...]
    mask: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)
    sh_basis: str = "descoteaux07"
    lmax: int = OUTPUT_LMAX
    refinement: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.fodf_sh.shape[-1] < n_coeffs(check_lmax(self.lmax)):
            raise ValueError(f"fodf_sh has {self.fodf_sh.shape[-1]} SH coefficients, fewer than lmax {self.lmax} needs")

    @property
    def shm_coeff(self) -> np.ndarray:
        """WM fODF SH up to :attr:`lmax` (8: shape ``(X, Y, Z, 45)``), ``descoteaux07`` (legacy=False), as dipy's."""
        return self.sh(self.lmax)

    def sh(self, lmax: int) -> np.ndarray:
        """WM fODF SH truncated to an even ``lmax`` (at most that of ``fodf_sh``), shape ``(X, Y, Z, K)``."""
        return self.fodf_sh[..., : n_coeffs(check_lmax(lmax))]

    def odf(self, sphere: Sphere) -> np.ndarray:
        """WM fODF (all of ``fodf_sh``) on the vertices of a dipy ``Sphere`` (voxel-axis frame), ``(X, Y, Z, V)``."""
        basis = sh_matrix(sphere.vertices, lmax_from_n_coeffs(self.fodf_sh.shape[-1]), self.sh_basis)
        return self.fodf_sh @ basis.T.astype(self.fodf_sh.dtype)

    def peaks(self, lmax: int | None = None, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Peaks of the fODF truncated to ``lmax`` (default :attr:`lmax`): ``(peak_dirs (X,Y,Z,P,3), peak_values
        (X,Y,Z,P))``.

        Keyword arguments go to :func:`equidmri.dmri.peaks.find_peaks` (thresholds, ``npeaks``).
        """
        return find_peaks(self.sh(self.lmax if lmax is None else lmax), self.mask, **kwargs)


class SHDModel:
    """Spatio-hemispherical deconvolution bound to one acquisition and its response functions.

    The network reads volumes of the *input* acquisition (``input_gtab``, by default ``gtab``): its input
    channels are the b=0 mean and one per-shell SH interpolation of each input shell. The reconstruction
    loss, the signal model and the responses are on the *target* acquisition ``gtab``. With a low angular
    resolution ``input_gtab`` (e.g. b=0 + 29 directions of one shell) and the full acquisition as ``gtab``,
    training learns angular super-resolution; prediction then needs only input-acquisition volumes.

    Parameters
    ----------
    gtab : GradientTable
        Target acquisition (reconstructed in training), b-vectors in the voxel-axis frame, with b=0 volumes.
    responses : TissueResponses
        WM (single-shell) or WM/GM/CSF (multi-shell) responses on the shells of ``gtab``.
    network : NetworkConfig
        Architecture; kept as ``network_config`` (``net`` is the built ``torch.nn.Module``).
    train_config : TrainConfig
        Training settings; ``train_config.seed`` also seeds the initial weights, through a forked RNG (the
        global torch RNG is not changed).
    device : str or torch.device
    input_gtab : GradientTable, optional
        Acquisition the network reads (voxel-axis frame, with b=0 volumes); default ``gtab``.

    Raises
    ------
    ValueError
        If the shells of ``gtab`` and ``responses`` differ, or ``gtab`` or ``input_gtab`` has no b=0 volume.

    References
    ----------
    Elaldi, Gerig & Dey, "Equivariant spatio-hemispherical networks for diffusion MRI deconvolution",
    NeurIPS 2024; §4.2.1 for the angular super-resolution setting.
    """

    def __init__(
        self,
        gtab: GradientTable,
        responses: TissueResponses,
        network: NetworkConfig | None = None,
        train_config: TrainConfig | None = None,
        device: str | torch.device = "cpu",
        input_gtab: GradientTable | None = None,
    ) -> None:
        self.gtab, self.responses = gtab, responses
        self.input_gtab = gtab if input_gtab is None else input_gtab
        self.network_config = network or NetworkConfig()
        self.train_config = train_config or TrainConfig()
        self.shells = find_shells(gtab.bvals)
        self.input_shells = find_shells(self.input_gtab.bvals)
        check_same_shells(self.shells.bvals, responses.shells)
        check_has_b0(self.shells, "gtab")
        check_has_b0(self.input_shells, "input_gtab")
        net_kwargs = self.network_config.to_dict()
        net_kwargs.pop("fractions")
        self.fraction_mode = self.network_config.fraction_mode(len(responses.tissues))
        with torch.random.fork_rng(devices=[]):  # seeded initial weights; the caller's global RNG is left as it was
            torch.manual_seed(self.train_config.seed)
            self.net = build_model(
                net_kwargs.pop("model"),
                in_channels=1 + self.input_shells.bvals.size,
                n_iso=0 if self.fraction_mode == "nnls" else len(responses.tissues) - 1,  # NNLS fits them
                **net_kwargs,
            ).to(device)
        vertices = self.net.grid.vertices
        self.sampler = build_sampler(np.asarray(self.input_gtab.bvecs, dtype=np.float64), self.input_shells, vertices)
        self.signal_model = self._signal_model(gtab, self.shells, responses).to(device)
        # prediction completes the network's outputs with the signal it reads (the input acquisition) and
        # refines them per voxel on that signal
        input_responses = responses.on_shells(self.input_shells.bvals) if self.super_resolution else responses
        self.input_signal_model = (
            self._signal_model(self.input_gtab, self.input_shells, input_responses)
            if self.super_resolution
            else self.signal_model
        ).to(device)
        self.refiner = FODFRefiner(
            np.asarray(self.input_gtab.bvecs, dtype=np.float64),
            self.input_shells,
            input_responses.zonal(FODF_LMAX),
        ).to(device)

    def _signal_model(self, gtab: GradientTable, shells: Shells, responses: TissueResponses) -> SignalModel:
        vertices = self.net.grid.vertices
        bvecs = np.asarray(gtab.bvecs, dtype=np.float64)
        return SignalModel(vertices, bvecs, shells, responses.zonal(FODF_LMAX), self.fraction_mode)

    @property
    def network(self) -> NetworkConfig:
        """Deprecated name of :attr:`network_config` (kept for one minor release)."""
        warnings.warn("SHDModel.network is deprecated; use SHDModel.network_config", DeprecationWarning, stacklevel=2)
        return self.network_config

    @property
    def super_resolution(self) -> bool:
        """True when the network reads another acquisition than the one it reconstructs (``input_gtab`` given)."""
        return self.input_gtab is not self.gtab

    def checkpoint_meta(self) -> dict[str, Any]:
        """What a checkpoint records besides the weights.

        ``shells`` are the target's and ``input_shells`` the input's (s/mm²); a super-resolution model also
        records the target acquisition, ``target_gradients = {"bvals": (N,) s/mm², "bvecs": (N, 3) voxel
        frame}``, since prediction only sees input-acquisition volumes.
        """
        meta = {
            "version": __version__,
            "network": self.network_config.to_dict(),
            "train": self.train_config.to_dict(),
            "responses": self.responses.to_dict(),
            "shells": self.shells.bvals.tolist(),
            "input_shells": self.input_shells.bvals.tolist(),
        }
        if self.super_resolution:
            meta["target_gradients"] = {
                "bvals": np.asarray(self.gtab.bvals, dtype=np.float64).tolist(),
                "bvecs": np.asarray(self.gtab.bvecs, dtype=np.float64).tolist(),
            }
        return meta

    def acquisition_operators(
        self, gtab: GradientTable, responses: TissueResponses
    ) -> tuple[SphereSampler, SignalModel]:
        """The input sampler and the signal model of another acquisition with the network's shells (a subject of a
        cohort: its own directions and its own responses), the signal model on the network's device.

        Raises
        ------
        ValueError
            If the shells of ``gtab`` or of ``responses`` differ from the network's input shells, or ``gtab``
            has no b=0 volume.
        """
        shells = find_shells(gtab.bvals)
        check_same_shells(shells.bvals, self.input_shells.bvals)
        check_same_shells(shells.bvals, responses.shells)
        check_has_b0(shells, "gtab")
        sampler = build_sampler(np.asarray(gtab.bvecs, dtype=np.float64), shells, self.net.grid.vertices)
        signal_model = self._signal_model(gtab, shells, responses)  # the fractions as self.fraction_mode says
        return sampler, signal_model.to(next(self.net.parameters()).device)

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, gtab: GradientTable, device: str | torch.device = "cpu"
    ) -> SHDModel:
        """Rebuild a trained model for a new acquisition ``gtab`` with the shells of the network's input.

        For a super-resolution checkpoint, ``gtab`` is the new input acquisition and the target acquisition
        is rebuilt from the checkpoint's ``target_gradients``.

        Raises
        ------
        ValueError
            If the acquisition's shells differ from those the network was trained to read.
        """
        state = load_checkpoint(path)
        meta = state["meta"]
        check_same_shells(find_shells(gtab.bvals).bvals, np.asarray(meta.get("input_shells", meta["shells"])))
        responses = TissueResponses.from_dict(meta["responses"])
        configs = (NetworkConfig.from_dict(meta["network"]), TrainConfig.from_dict(meta["train"]))
        target = meta.get("target_gradients")
        if target is None:
            model = cls(gtab, responses, *configs, device=device)
        else:
            model = cls(
                make_gtab(np.asarray(target["bvals"]), np.asarray(target["bvecs"])),
                responses,
                *configs,
                device=device,
                input_gtab=gtab,
            )
        model.net.load_state_dict(state["state_dict"])
        model.net.eval()
        return model

    def _normalise(self, dwi: np.ndarray, gtab: GradientTable, mask: np.ndarray, s0_wm: float, name: str) -> np.ndarray:
        """``dwi (X, Y, Z, N)`` of ``gtab`` divided by ``s0_wm`` inside ``mask``, zero outside, float32."""
        if dwi.ndim != 4 or dwi.shape[-1] != len(gtab.bvals):
            raise ValueError(
                f"{name} must be (X, Y, Z, {len(gtab.bvals)}) to match its gradient table, got {dwi.shape}"
            )
        if mask.shape != dwi.shape[:3]:
            raise ValueError(f"mask shape {mask.shape} differs from the {name} volume's {dwi.shape[:3]}")
        normalised = np.divide(dwi, s0_wm, dtype=np.float32)  # the one float32 copy of the volume
        normalised[~mask] = 0.0
        return normalised

    def _inputs(self, dwi: np.ndarray, mask: np.ndarray, s0_wm: float, name: str) -> SampledInputs:
        """Network input ``(C, X, Y, Z, V)`` of an input-acquisition volume, lifted block by block."""
        return SampledInputs(self._normalise(dwi, self.input_gtab, mask, s0_wm, name), self.sampler)

    def _prepare(
        self, dwi: np.ndarray, mask: np.ndarray, s0_wm: float, input_dwi: np.ndarray | None = None
    ) -> tuple[SampledInputs, torch.Tensor]:
        """Network input from ``input_dwi`` (default ``dwi``) and the normalised target ``dwi``."""
        target = self._normalise(dwi, self.gtab, mask, s0_wm, "dwi")
        if input_dwi is None and not self.super_resolution:  # one normalised copy serves both
            return SampledInputs(target, self.sampler), torch.from_numpy(target)
        input_dwi = dwi if input_dwi is None else input_dwi
        if input_dwi.shape[:3] != dwi.shape[:3]:
            raise ValueError(
                f"input_dwi has spatial shape {input_dwi.shape[:3]}, dwi {dwi.shape[:3]}: both must be the same volume"
            )
        return self._inputs(input_dwi, mask, s0_wm, "input_dwi"), torch.from_numpy(target)

    def fit(
        self,
        dwi: np.ndarray,
        mask: np.ndarray,
        *,
        input_dwi: np.ndarray | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        resume: bool = False,
        progress: bool = False,
        tile: int = DEFAULT_TILE,
        refine_steps: int = REFINE_STEPS,
        refine_tv: float | None = None,
        refine_precision: str = "auto",
    ) -> FODFFit:
        """Train (unsupervised) to reconstruct ``dwi`` from ``input_dwi``, then deconvolve ``input_dwi``.

        Both volumes are divided by the WM b=0 response ``responses.s0[0]``.

        Parameters
        ----------
        dwi : ndarray, shape ``(X, Y, Z, N)``
            Target signal on ``gtab``, scanner units.
        mask : ndarray, shape ``(X, Y, Z)`` bool
        input_dwi : ndarray, shape ``(X, Y, Z, N_in)``, optional
            The same volume acquired on ``input_gtab`` (e.g. its low angular resolution subset), scanner
            units; default ``dwi``.
        checkpoint_path, resume : see :func:`equidmri.recon.train.train`.
        tile : int
            Inference tile edge, voxels.
        refine_steps : int
            Adam steps of the per-voxel refinement of the network's answer (:mod:`equidmri.recon.refine`); 0
            keeps the network's output (the paper's setting, fODF to lmax 18).
        refine_tv : float, optional
            Weight of the spatial (TV) term in the refinement (:meth:`FODFRefiner.refine_volume`; every mask voxel
            is then refined together; 0 refines each voxel on its own). Default: :meth:`FODFRefiner.default_tv`,
            with the WM alone :data:`~equidmri.recon.config.REFINE_TV` scaled to the number of fitted volumes
            (3e-5 at 29 directions, 9.7e-6 at 90); with GM and CSF 3e-5 where the fit is
            underdetermined, else 0.
        refine_precision : str
            Of the refinement's products with the penalty directions' SH basis (``"auto"``: bfloat16 on a CPU that
            multiplies it natively, else float32; ``"float32"``; ``"bfloat16"``;
            :func:`equidmri.runtime.product_dtype`).

        Raises
        ------
        ValueError
            If ``dwi`` (``input_dwi``) does not have one volume per row of ``gtab`` (``input_gtab``), the
            spatial shapes of ``dwi``, ``input_dwi`` and ``mask`` differ, or the mask is empty.

        References
        ----------
        Elaldi, Gerig & Dey, NeurIPS 2024, eq. 4 (loss) and §4.2.1 (angular super-resolution).
        """
        inputs, target = self._prepare(dwi, mask, self.responses.s0[0], input_dwi)
        history = self._train(inputs, target, mask, checkpoint_path, resume, progress)
        return self._deconvolve(inputs, mask, history, tile, progress, refine_steps, refine_tv, refine_precision)

    def train_network(
        self,
        dwi: np.ndarray,
        mask: np.ndarray,
        *,
        input_dwi: np.ndarray | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        resume: bool = False,
        progress: bool = False,
    ) -> list[dict[str, float]]:
        """:meth:`fit` without its final deconvolution of the training volume (when only other volumes are
        wanted, e.g. with :meth:`predict`); same parameters and errors. Returns the loss history."""
        inputs, target = self._prepare(dwi, mask, self.responses.s0[0], input_dwi)
        return self._train(inputs, target, mask, checkpoint_path, resume, progress)

    def _train(
        self,
        inputs: torch.Tensor,
        target: torch.Tensor,
        mask: np.ndarray,
        checkpoint_path: str | os.PathLike | None,
        resume: bool,
        progress: bool,
    ) -> list[dict[str, float]]:
        return train(
            self.net,
            self.signal_model,
            inputs,
            target,
            torch.from_numpy(mask),
            self.train_config,
            checkpoint_path=checkpoint_path,
            meta=self.checkpoint_meta(),
            resume=resume,
            progress=progress,
        )

    def predict(
        self,
        dwi: np.ndarray,
        mask: np.ndarray,
        *,
        s0_wm: float | None = None,
        tile: int = DEFAULT_TILE,
        progress: bool = False,
        refine_steps: int = REFINE_STEPS,
        refine_tv: float | None = None,
        refine_precision: str = "auto",
    ) -> FODFFit:
        """Deconvolve ``dwi`` with the trained network (no training).

        Parameters
        ----------
        dwi : ndarray, shape ``(X, Y, Z, N_in)``
            Volume of the input acquisition (``input_gtab``: the low-resolution one of a super-resolution
            model), scanner units.
        mask : ndarray, shape ``(X, Y, Z)`` bool
        s0_wm : float, optional
            Normalises the signal (the new volume's WM b=0 response, scanner units; default the model's).
        tile, refine_steps, refine_tv, refine_precision : see :meth:`fit`.

        Raises
        ------
        ValueError
            If ``dwi`` does not have one volume per row of ``input_gtab`` or ``mask`` has another shape.
        """
        inputs = self._inputs(dwi, mask, self.responses.s0[0] if s0_wm is None else s0_wm, "dwi")
        return self._deconvolve(inputs, mask, [], tile, progress, refine_steps, refine_tv, refine_precision)

    def _deconvolve(
        self,
        inputs: SampledInputs,
        mask: np.ndarray,
        history: list,
        tile: int,
        progress: bool,
        refine_steps: int,
        refine_tv: float | None = None,
        refine_precision: str = "auto",
    ) -> FODFFit:
        if refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, got {refine_steps}")
        if refine_tv is not None and not refine_tv >= 0:
            raise ValueError(f"refine_tv must be >= 0, got {refine_tv}")
        model = self.input_signal_model
        device = model.grid_to_sh.device
        precision = str(product_dtype(refine_precision, device)).removeprefix("torch.")  # ValueError if unknown
        if not refine_steps:
            refine_tv, reason = 0.0, "no refinement steps"
        elif refine_tv is None:
            refine_tv, reason = self.refiner.default_tv()
            logger.info("refinement: %d Adam steps; %s (--refine-tv sets the weight)", refine_steps, reason)
        else:
            reason = "given"
        if refine_steps:
            logger.info("refinement: penalty products in %s (--refine-precision %s)", precision, refine_precision)
        per_voxel = refine_steps if not refine_tv else 0  # with TV, the whole mask is refined after inference

        def to_sh(fodf: torch.Tensor, iso: torch.Tensor, grown: tuple[slice, ...], wanted: torch.Tensor):
            """A tile's grid fODFs -> completed (and refined) SH coefficients and isotropic fractions (the tile's
            mask voxels)."""
            signal = inputs.signal(grown, wanted.numpy()).to(device)
            fodf, iso = model.complete(fodf.to(device), iso.to(device), inputs.b0(signal), signal)
            if per_voxel:
                return self.refiner(model.fodf_sh(fodf), iso, signal, per_voxel, precision=precision)
            return model.fodf_sh(fodf), iso

        fodf_sh, iso = predict_volume(
            self.net, inputs, torch.from_numpy(mask), tile=tile, progress=progress, reduce=to_sh
        )  # on the mask voxels only, (M, ...)
        if refine_steps and refine_tv:
            signal = inputs.signal(tuple(slice(0, n) for n in mask.shape), mask).to(device)
            fodf_sh, iso = self.refiner.refine_volume(
                fodf_sh.to(device), iso.to(device), signal, mask, refine_steps, refine_tv, precision=precision
            )
            fodf_sh, iso = fodf_sh.cpu(), iso.cpu()
        wm_fraction = fodf_sh[:, :1] * math.sqrt(4 * math.pi)  # integral of the fODF
        return FODFFit(
            fodf_sh=on_volume(fodf_sh, mask),
            fractions=on_volume(torch.cat([wm_fraction, iso], -1), mask),
            tissues=self.responses.tissues,
            mask=mask.copy(),
            history=history,
            refinement={"steps": refine_steps, "tv": refine_tv, "reason": reason, "precision": precision},
        )


def on_volume(values: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """``(M, K)`` values at the voxels of ``mask`` (C order) -> ``(X, Y, Z, K)`` float32, zero outside."""
    volume = np.zeros(mask.shape + (values.shape[-1],), dtype=np.float32)
    volume[mask] = values.numpy()
    return volume


def check_same_shells(bvals: np.ndarray, reference: np.ndarray) -> None:
    """Raise ``ValueError`` unless the DW shells match ``reference`` within ``SHELL_TOL`` s/mm²."""
    bvals, reference = np.asarray(bvals), np.asarray(reference)
    if bvals.shape != reference.shape or np.any(np.abs(bvals - reference) > SHELL_TOL):
        raise ValueError(
            f"the acquisition's shells {np.round(bvals).tolist()} s/mm² differ from the model's "
            f"{np.round(reference).tolist()} s/mm² (tolerance {SHELL_TOL} s/mm²)"
        )


def check_has_b0(shells: Shells, name: str) -> None:
    """Raise ``ValueError`` unless the acquisition ``name`` holds a b=0 volume (it normalises the signal)."""
    if not np.any(shells.index < 0):
        raise ValueError(
            f"{name} has no b=0 volume (b <= {B0_THRESHOLD} s/mm²): the signal cannot be "
            "normalised by the WM b=0 response"
        )
