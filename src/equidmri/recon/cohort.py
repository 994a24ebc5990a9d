"""One network trained on a cohort: subjects prepared once, patches read from disk, split over processes.

Every subject keeps its own gradient directions and its own tissue responses (estimated as ``deconv`` does,
by :func:`equidmri.recon.pipeline.prepare`), hence its own input sampler and forward model; all subjects
share one shell layout, which the network's input channels depend on.

1. :func:`check_cohort` validates every row (files, headers, gradients, shells) without reading voxels.
2. :func:`prepare_cohort` prepares each subject once (mask, responses) and writes its b0-normalised signal as a
   C-order ``.npy`` file (``OUT/subjects/<subject>/signal.npy``), which training memory-maps: a patch is
   ``16²`` contiguous runs of the file (a ``16³`` patch of 65 volumes: about 2 MB of pages, 0.15 ms when
   cached; the NIfTI's own layout would scatter it over 65 MB of pages), the page cache holds what is reused,
   and no process holds a whole volume while training. In a ``torch.distributed`` run each process
   prepares its share of the subjects.
3. :class:`CohortPatches` is the :class:`~equidmri.recon.train.PatchSource` of :func:`train_cohort`: each step
   is ``batch_size`` patches of one subject, the steps of an epoch are split over the processes by a
   ``DistributedSampler`` (seeded, reshuffled every epoch), and every patch position follows from
   ``(seed, epoch, step)``, so a resumed run samples what the uninterrupted one would have.

Prediction for a new subject (``equidmri predict``) normalises its signal by its own WM b=0 response; the
checkpoint's responses (the cohort's element-wise median, :func:`reference_responses`) serve only the
completion of the outputs (:meth:`~equidmri.recon.forward.SignalModel.complete`: rescaling to the measured b=0
signal, or the NNLS fit of the tissue fractions, as the network's ``fractions`` mode says).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from dipy.core.gradients import GradientTable
from torch import Tensor, nn
from torch.utils.data import DistributedSampler

from equidmri.dmri.gradients import Shells, check_shell_sampling, find_shells, make_gtab
from equidmri.dmri.io import DWIData, DWIHeader, load_json, open_array, save_array, save_json, save_nifti
from equidmri.dmri.response import TissueResponses
from equidmri.recon.config import TrainConfig
from equidmri.recon.inputs import SampledInputs
from equidmri.recon.losses import DeconvLoss
from equidmri.recon.model import SHDModel, check_has_b0, check_same_shells
from equidmri.recon.pipeline import prepare
from equidmri.recon.train import patch_loss, patch_slices, run_training

logger = logging.getLogger(__name__)

SUBJECTS_DIR = "subjects"  # OUT/subjects/<subject>/: what preparation wrote for each subject
SIGNAL_FILE = "signal.npy"  # (X, Y, Z, N) float32, DWI / WM b=0 response inside the mask, 0 outside
MASK_FILE = "mask.npy"  # (X, Y, Z) bool
MASK_NIFTI = "mask.nii.gz"  # the same mask on the subject's grid, to look at
SUBJECT_FILE = "subject.json"  # written last: the subject is prepared
SUBJECT_CACHE = 8  # subjects whose sampler, signal model and mask voxels each process keeps (least recently used)

__all__ = [
    "CohortPatches",
    "PreparedSubject",
    "check_cohort",
    "epoch_batches",
    "prepare_cohort",
    "process_rank",
    "reference_responses",
    "train_cohort",
]


class SubjectFiles(Protocol):
    """A row of a cohort list (:class:`equidmri.data.Subject`)."""

    subject: str
    dwi: Path
    bvals: Path
    bvecs: Path
    mask: Path | None

    def check(self) -> DWIHeader: ...

    def load(self) -> DWIData: ...


def process_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of this process in an initialised ``torch.distributed`` group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _naming(subject: SubjectFiles, error: Exception) -> Exception:
    """``error`` with the subject's name in front of its message (same type)."""
    return type(error)(f"cohort subject {subject.subject!r}: {error}")


def check_cohort(subjects: Sequence[SubjectFiles]) -> Shells:
    """Validate every subject without reading its voxels; return the shell layout they share.

    Raises
    ------
    FileNotFoundError
        If a subject's file is missing (the message names the subject and the file).
    ValueError
        If a subject's files are unreadable or disagree (as :func:`equidmri.dmri.io.check_dwi`), it has no b=0
        volume or no shells (:func:`equidmri.dmri.gradients.check_shell_sampling`), or its shells differ from
        the first subject's (the message names both).
    """
    if not subjects:
        raise ValueError("the cohort has no subject")
    reference: tuple[SubjectFiles, Shells] | None = None
    for subject in subjects:
        try:
            shells = find_shells(subject.check().bvals)
            check_has_b0(shells, "its acquisition")
            check_shell_sampling(shells)
        except (OSError, ValueError) as error:
            raise _naming(subject, error) from error
        if reference is None:
            reference = (subject, shells)
            continue
        first, first_shells = reference
        try:
            check_same_shells(shells.bvals, first_shells.bvals)
        except ValueError as error:
            raise ValueError(
                f"cohort subject {subject.subject!r} has the shells {np.round(shells.bvals).tolist()} s/mm², "
                f"subject {first.subject!r} {np.round(first_shells.bvals).tolist()} s/mm²: one network needs one "
                "shell layout"
            ) from error
    return reference[1]


@dataclass(frozen=True, eq=False)
class PreparedSubject:
    """A subject as :func:`prepare_cohort` left it on disk.

    Attributes
    ----------
    subject : str
    folder : Path
        ``OUT/subjects/<subject>``.
    bvals : ndarray, shape ``(N,)``
        s/mm².
    bvecs : ndarray, shape ``(N, 3)``
        Unit vectors, voxel-axis frame.
    responses : TissueResponses
        The subject's own, estimated inside its mask.
    shape : tuple of int
        ``(X, Y, Z)``.
    mask_voxels : int
    """

    subject: str
    folder: Path
    bvals: np.ndarray
    bvecs: np.ndarray
    responses: TissueResponses
    shape: tuple[int, ...]
    mask_voxels: int

    def gtab(self) -> GradientTable:
        """The subject's acquisition (voxel-axis frame)."""
        return make_gtab(self.bvals, self.bvecs)

    def signal(self) -> np.ndarray:
        """``(X, Y, Z, N)`` float32 b0-normalised signal, memory-mapped (read when sliced)."""
        return open_array(self.folder / SIGNAL_FILE)

    def mask(self) -> np.ndarray:
        """``(X, Y, Z)`` bool, memory-mapped."""
        return open_array(self.folder / MASK_FILE)

    @classmethod
    def read(cls, folder: Path) -> PreparedSubject:
        """The subject prepared in ``folder``.

        Raises
        ------
        FileNotFoundError
            If ``folder`` holds no complete preparation.
        """
        record = load_json(folder / SUBJECT_FILE)
        return cls(
            subject=record["subject"],
            folder=folder,
            bvals=np.asarray(record["bvals"], dtype=np.float64),
            bvecs=np.asarray(record["bvecs"], dtype=np.float64),
            responses=TissueResponses.from_dict(record["responses"]),
            shape=tuple(record["shape"]),
            mask_voxels=int(record["mask_voxels"]),
        )


def _sources(subject: SubjectFiles) -> dict[str, str | None]:
    files = {"dwi": subject.dwi, "bvals": subject.bvals, "bvecs": subject.bvecs, "mask": subject.mask}
    return {name: None if path is None else os.fspath(Path(path).resolve()) for name, path in files.items()}


def prepare_subject(subject: SubjectFiles, folder: Path, reuse: bool = False) -> PreparedSubject:
    """Mask, responses and b0-normalised signal of one subject, written into ``folder``.

    The whole volume is in memory here, once per subject (:func:`equidmri.dmri.io.load_dwi`); training then
    reads it from ``signal.npy``. With ``reuse``, a preparation of the same files found in ``folder`` is kept.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`equidmri.recon.pipeline.prepare` and :func:`equidmri.dmri.io.load_dwi`.
    """
    if reuse and (folder / SUBJECT_FILE).is_file() and load_json(folder / SUBJECT_FILE)["sources"] == _sources(subject):
        return PreparedSubject.read(folder)
    prepared = prepare(subject.load())
    s0_wm = prepared.responses.s0[0]
    signal = np.where(prepared.mask[..., None], prepared.data.dwi / s0_wm, 0.0).astype(np.float32)  # as SHDModel
    folder.mkdir(parents=True, exist_ok=True)
    save_array(folder / SIGNAL_FILE, signal, force=True)
    save_array(folder / MASK_FILE, prepared.mask, force=True)
    save_nifti(folder / MASK_NIFTI, prepared.mask, prepared.data.affine, force=True)
    record = {
        "subject": subject.subject,
        "sources": _sources(subject),
        "shape": list(prepared.mask.shape),
        "mask_voxels": int(prepared.mask.sum()),
        "mask_source": prepared.mask_source,
        "bvals": prepared.data.bvals.tolist(),
        "bvecs": prepared.data.bvecs.tolist(),
        "responses": prepared.responses.to_dict(),
        "timings": prepared.timings,
    }
    save_json(folder / SUBJECT_FILE, record, force=True)  # last: marks the subject as prepared
    logger.info("prepared subject %s: %d mask voxels", subject.subject, record["mask_voxels"])
    return PreparedSubject.read(folder)


def prepare_cohort(subjects: Sequence[SubjectFiles], out_dir: Path, reuse: bool = False) -> list[PreparedSubject]:
    """Prepare every subject into ``out_dir/subjects/<subject>`` (:func:`prepare_subject`); return them all.

    In a ``torch.distributed`` run process ``r`` of ``W`` prepares the subjects ``r, r + W, ...``; every process
    then reads every subject's record. An error on any process is raised on every process.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`prepare_subject`, naming the subject.
    """
    rank, world_size = process_rank()
    folders = [Path(out_dir) / SUBJECTS_DIR / s.subject for s in subjects]
    failure = None
    for subject, folder in list(zip(subjects, folders))[rank::world_size]:
        try:
            prepare_subject(subject, folder, reuse)
        except (OSError, ValueError) as error:
            failure = str(_naming(subject, error))
            break
    failures = [failure]
    if world_size > 1:
        failures = [None] * world_size
        dist.all_gather_object(failures, failure)
    failures = [f for f in failures if f is not None]
    if failures:
        raise ValueError(failures[0])
    return [PreparedSubject.read(folder) for folder in folders]


def reference_responses(subjects: Sequence[PreparedSubject]) -> TissueResponses:
    """Element-wise median of the subjects' responses (shells, eigenvalues, b=0 signals): what a cohort model's
    checkpoint records, for the completion of its outputs at prediction (each subject trains with its own)."""
    responses = [s.responses for s in subjects]
    return TissueResponses(
        tissues=responses[0].tissues,
        shells=np.median([r.shells for r in responses], axis=0),
        evals=np.median([r.evals for r in responses], axis=0),
        s0=np.median([r.s0 for r in responses], axis=0),
    )


def epoch_batches(subjects: Sequence[PreparedSubject], config: TrainConfig) -> list[int]:
    """Batches of each subject per epoch: ``config.patches_per_epoch`` (default: mask voxels / patch voxels, at
    least ``batch_size``) // ``batch_size``, at least 1, as for one volume."""
    batches = []
    for subject in subjects:
        patch_voxels = math.prod(min(config.patch_size, n) for n in subject.shape)
        per_epoch = config.patches_per_epoch or max(config.batch_size, math.ceil(subject.mask_voxels / patch_voxels))
        batches.append(max(1, per_epoch // config.batch_size))
    return batches


@dataclass(frozen=True, eq=False)
class _SubjectParts:
    """What a process keeps of a subject while it trains on it."""

    inputs: SampledInputs  # network input, lifted from the memory-mapped signal patch by patch
    signal: np.ndarray  # (X, Y, Z, N) memory-mapped
    mask: np.ndarray  # (X, Y, Z) bool memory-mapped
    voxels: np.ndarray  # (M, 3) mask voxels, patch centres are drawn among them
    signal_model: nn.Module


class CohortPatches:
    """Batches of ``config.batch_size`` patches of one subject; the batches of an epoch split over the processes.

    Each subject contributes ``config.patches_per_epoch`` patches per epoch (default: its mask voxels / patch
    voxels, at least one batch), as :class:`~equidmri.recon.train.VolumePatches` does for one volume. The batch
    ``i`` of epoch ``e`` takes its patch centres from ``numpy.random.default_rng([seed, e, i])``, and a
    ``DistributedSampler`` (seed ``config.seed``, reshuffled each epoch, padded so that every process takes the
    same number of steps) deals the batches to the processes. The sampling depends on nothing else, so a
    resumed run and every process agree without sharing a generator.

    Parameters
    ----------
    model : SHDModel
        The network (with the shells every subject shares); builds each subject's sampler and signal model.
    subjects : sequence of PreparedSubject
    config : TrainConfig
    rank, world_size : int
        This process and the number of processes.
    cache_size : int
        Subjects whose operators and mask voxels are kept (least recently used).
    """

    def __init__(
        self,
        model: SHDModel,
        subjects: Sequence[PreparedSubject],
        config: TrainConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        cache_size: int = SUBJECT_CACHE,
    ) -> None:
        self.model, self.subjects, self.config = model, list(subjects), config
        self.device = next(model.net.parameters()).device
        batches = epoch_batches(self.subjects, config)
        self.batch_subject = np.repeat(np.arange(len(self.subjects)), batches)  # subject of each batch
        self.sampler = DistributedSampler(
            range(self.batch_subject.size), num_replicas=world_size, rank=rank, shuffle=True, seed=config.seed
        )
        self.parts = functools.lru_cache(maxsize=cache_size)(self._load)

    def _load(self, index: int) -> _SubjectParts:
        subject = self.subjects[index]
        sampler, signal_model = self.model.acquisition_operators(subject.gtab(), subject.responses)
        signal, mask = subject.signal(), subject.mask()
        return _SubjectParts(SampledInputs(signal, sampler), signal, mask, np.argwhere(mask), signal_model)

    def steps_per_epoch(self) -> int:
        """Batches this process takes per epoch (the same on every process)."""
        return len(self.sampler)

    def batches(self, epoch: int) -> Iterator[tuple[int, Tensor, Tensor, Tensor]]:
        """``(subject index, x, y, m)`` per step of epoch ``epoch``."""
        self.sampler.set_epoch(epoch)
        for index in self.sampler:
            yield self.batch(epoch, index)

    def patches(self, epoch: int, index: int) -> tuple[int, list[tuple[slice, ...]]]:
        """Subject and patches ``(slice_x, slice_y, slice_z)`` of batch ``index`` of epoch ``epoch``: centred on
        mask voxels drawn by ``numpy.random.default_rng([seed, epoch, index])``, moved inside the volume."""
        subject = int(self.batch_subject[index])
        voxels, shape = self.parts(subject).voxels, self.subjects[subject].shape
        rng = np.random.default_rng([self.config.seed, epoch, index])
        edge = tuple(min(self.config.patch_size, n) for n in shape)
        centres = voxels[rng.integers(len(voxels), size=self.config.batch_size)]
        return subject, [patch_slices(centre, edge, shape) for centre in centres]

    def batch(self, epoch: int, index: int) -> tuple[int, Tensor, Tensor, Tensor]:
        """Batch ``index`` of epoch ``epoch``: network input ``x (B, C, X, Y, Z, V)``, normalised signal
        ``y (B, X, Y, Z, N)`` and mask ``m (B, X, Y, Z)``, on the network's device."""
        subject, slices = self.patches(epoch, index)
        parts = self.parts(subject)
        x = torch.stack([parts.inputs[(slice(None),) + s] for s in slices]).to(self.device)
        y = torch.stack([torch.from_numpy(np.array(parts.signal[s])) for s in slices]).to(self.device)
        m = torch.stack([torch.from_numpy(np.array(parts.mask[s])) for s in slices]).to(self.device)
        return subject, x, y, m

    def loss_terms(self, net: nn.Module, batch: tuple[int, Tensor, Tensor, Tensor], loss_fn: DeconvLoss) -> dict:
        """:func:`~equidmri.recon.train.patch_loss` with the batch's subject's signal model."""
        subject, x, y, m = batch
        return patch_loss(net, self.parts(subject).signal_model, loss_fn, x, y, m)

    def state(self) -> None:
        """Nothing: the sampling follows from the seed and the epoch."""
        return None

    def load_state(self, state: Any) -> None:
        """Nothing to restore (see :meth:`state`)."""


def train_cohort(
    model: SHDModel,
    subjects: Sequence[PreparedSubject],
    *,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model``'s network on every subject (:class:`CohortPatches`, :func:`~equidmri.recon.train.run_training`).

    Run it in every process of a ``torch.distributed`` group (or alone): the network is wrapped in
    ``DistributedDataParallel``, rank 0 writes the checkpoint. The checkpoint's ``meta`` is that of
    :meth:`SHDModel.checkpoint_meta` (``responses``: :func:`reference_responses`) plus ``cohort``: the subjects'
    names and responses. ``checkpoint_path``, ``resume``, ``progress`` and ``callback`` as
    :func:`~equidmri.recon.train.run_training`.

    Returns
    -------
    list of dict
        Loss terms per epoch, averaged over the processes.

    Raises
    ------
    TrainingDivergedError
        If a loss term became non-finite on any process.
    ValueError
        If a subject's shells differ from the network's.
    """
    rank, world_size = process_rank()
    source = CohortPatches(model, subjects, model.train_config, rank=rank, world_size=world_size)
    meta = {
        **model.checkpoint_meta(),
        "cohort": {
            "subjects": [s.subject for s in subjects],
            "responses": {s.subject: s.responses.to_dict() for s in subjects},
            "processes": world_size,
        },
    }
    return run_training(
        model.net,
        source,
        model.train_config,
        checkpoint_path=checkpoint_path,
        meta=meta,
        resume=resume,
        progress=progress,
        callback=callback,
    )
