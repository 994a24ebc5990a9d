"""The shipped, pretrained SHD-TV networks (single-shell and multi-shell): their recipes, ranges and loading.

Each network is trained once, unsupervised (SHD eq. 4 with the SHD-TV weights), on a synthetic cohort that
:class:`SyntheticCohort` draws on the fly: one new phantom per epoch (:func:`equidmri.sims.phantoms.make_phantom`,
random bundles, crossings, a CSF-like blob, grey-matter partial volume), each with its own shells (drawn in the
recipe's ranges), diffusivities, SNR (10-50) and direction sets, and each shell read at a random lower angular
resolution (a subset of its 90 directions) while the loss reconstructs all 90 (angular super-resolution, SHD paper
§4.2.1). The responses of every phantom are estimated from the series the network reads, as
:func:`equidmri.recon.pipeline.prepare` does on a user's volume (WM alone for one shell; WM, GM and CSF for
three), so the network learns to deconvolve with the responses it will be given. The network reads the signal
interpolated onto its HEALPix grid, so it does not depend on the directions of an acquisition.

Two recipes (:data:`RECIPES`), chosen by the number of shells of an acquisition (:func:`recipe_for`):
:data:`SINGLE_SHELL` (one shell of b = 700-3000 s/mm², 20-150 directions) and :data:`MULTI_SHELL` (three shells
of b = 500-1500, 1000-2500 and 2000-3500 s/mm², 12-150 directions each, e.g. HCP's 1000/2000/3000). The weights
ship as package data (``equidmri/models/``, checkpoints read with ``weights_only=True``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dipy.core.gradients import GradientTable
from torch import Tensor, nn

from equidmri.dmri.gradients import Shells, find_shells, make_gtab
from equidmri.dmri.response import TissueResponses, estimate_responses
from equidmri.recon.checkpoint import load_checkpoint
from equidmri.recon.config import LossWeights, NetworkConfig, TrainConfig
from equidmri.recon.losses import DeconvLoss
from equidmri.recon.model import SHDModel
from equidmri.recon.train import patch_loss, run_training, sample_patches
from equidmri.sims.phantoms import make_phantom
from equidmri.sims.synthesis import make_protocol

__all__ = [
    "MULTI_SHELL",
    "PRETRAINED_NETWORK",
    "RECIPES",
    "SINGLE_SHELL",
    "PretrainedRecipe",
    "SyntheticCohort",
    "load_pretrained",
    "out_of_range",
    "pretrained_path",
    "recipe_for",
    "train_pretrained",
]

TARGET_DIRECTIONS = 90  # directions of each shell of a training phantom (the loss's high-resolution series)
SNR_RANGE = (10.0, 50.0)
N_B0_RANGE = (1, 6)
LAMBDA_PAR = (1.3e-3, 2.1e-3)  # mm²/s; wider than the phantom set's so that the responses vary
LAMBDA_PERP = (0.1e-3, 0.6e-3)
PHANTOM_SIZE = 24  # voxels per edge of a training phantom
SUPERVISED_LMAX = 8  # degree of the true fODF the supervised term compares with (that of fod.nii.gz)
MIN_SHELL_GAP = 400.0  # s/mm²: least difference between two shells of a multi-shell training phantom
PHANTOM_DRAWS = 10  # phantoms drawn for an epoch until the responses can be estimated on one (multi-tissue
# estimation needs CSF-like voxels, which a noisy phantom may lack)
SHELL_DRAWS = 100  # tries at drawing shells that far apart before giving up (a recipe's ranges allow it at once)


@dataclass(frozen=True)
class PretrainedRecipe:
    """One shipped network: its file, architecture, tissues and the acquisitions it accepts and is trained on.

    Parameters
    ----------
    name : str
        ``"single-shell"`` or ``"multi-shell"`` (``equidmri train --synthetic NAME``).
    file : str
        Checkpoint in ``equidmri/models/``.
    network : NetworkConfig
    tissues : tuple of str
        Response functions it is bound to (``TissueResponses.tissues``).
    shell_ranges : tuple of (float, float)
        b-value range (s/mm²) of each diffusion-weighted shell, in increasing b; training draws each shell in its
        range (at least :data:`MIN_SHELL_GAP` apart).
    directions : (int, int)
        Directions per shell it accepts.
    input_directions : (int, int)
        Range of the directions per shell the network reads in training (log-uniform; of
        :data:`TARGET_DIRECTIONS`).
    """

    name: str
    file: str
    network: NetworkConfig
    tissues: tuple[str, ...]
    shell_ranges: tuple[tuple[float, float], ...]
    directions: tuple[int, int]
    input_directions: tuple[int, int]

    def out_of_range(self, shells: Shells) -> str | None:
        """Why an acquisition is outside this model's range (one line), or None if it accepts it."""
        if shells.bvals.size != len(self.shell_ranges):
            return (
                f"it has {shells.bvals.size} diffusion-weighted shells; the {self.name} model reads "
                f"{len(self.shell_ranges)}"
            )
        for b, n, (low, high) in zip(shells.bvals, shells.n_directions, self.shell_ranges):
            if not low <= b <= high:
                return f"its shell b={b:g} s/mm² is outside the {self.name} model's {low:g}-{high:g}"
            if not self.directions[0] <= n <= self.directions[1]:
                return (
                    f"its shell b={b:g} s/mm² has {n} directions, outside the {self.name} model's "
                    f"{self.directions[0]}-{self.directions[1]}"
                )
        return None

    def draw_shells(self, rng: np.random.Generator) -> tuple[float, ...]:
        """A training phantom's shells (s/mm², rounded to 10), each uniform in its range, increasing."""
        for _ in range(SHELL_DRAWS):
            shells = tuple(float(np.round(rng.uniform(low, high), -1)) for low, high in self.shell_ranges)
            if all(b - a >= MIN_SHELL_GAP for a, b in zip(shells, shells[1:])):
                return shells
        raise RuntimeError(f"could not draw shells {MIN_SHELL_GAP:g} s/mm² apart in {self.shell_ranges}")


# voxel-wise (kernel size 1 at every level) and narrow: 3.4x faster inference than 3x3x3 kernels at the finest
# level on 2 CPU cores (7900 vs 2300 voxels/s, 30 directions, development measurement); TV still shapes training
PRETRAINED_NETWORK = NetworkConfig(widths=(4, 8, 16, 32), kernel_sizes=(1, 1, 1, 1), fractions="b0")
SINGLE_SHELL = PretrainedRecipe(
    name="single-shell",
    file="shd_tv_single_shell.pt",
    network=PRETRAINED_NETWORK,
    tissues=("wm",),
    shell_ranges=((700.0, 3000.0),),
    directions=(20, 150),
    input_directions=(20, 90),
)
# HCP-like and clinical multi-shell schemes: three shells (e.g. HCP 1000/2000/3000, MRtrix3's test volume
# 700/1200/2800), WM/GM/CSF responses, tissue fractions fitted per voxel (NNLS, issue #23)
MULTI_SHELL = PretrainedRecipe(
    name="multi-shell",
    file="shd_tv_multi_shell.pt",
    network=replace(PRETRAINED_NETWORK, fractions="nnls"),  # the same network, fractions fitted per voxel
    tissues=("wm", "gm", "csf"),
    shell_ranges=((500.0, 1500.0), (1000.0, 2500.0), (2000.0, 3500.0)),
    directions=(12, 150),
    input_directions=(12, 90),
)
RECIPES = {recipe.name: recipe for recipe in (SINGLE_SHELL, MULTI_SHELL)}


def pretrained_path(recipe: PretrainedRecipe = SINGLE_SHELL) -> Path:
    """Path of a shipped checkpoint inside the installed package."""
    return Path(str(resources.files("equidmri") / "models" / recipe.file))


def recipe_for(shells: Shells) -> PretrainedRecipe:
    """The shipped model that reads this shell layout (by its number of shells).

    Raises
    ------
    ValueError
        If no shipped model reads that many shells, or the one that does is not in range (the message says why).
    """
    recipe, reason = _match(shells)
    if reason is not None:
        raise ValueError(f"the pretrained model does not apply: {reason}")
    return recipe


def out_of_range(shells: Shells) -> str | None:
    """Why no shipped model accepts an acquisition (one line), or None if one does (:func:`recipe_for`)."""
    return _match(shells)[1]


def _match(shells: Shells) -> tuple[PretrainedRecipe | None, str | None]:
    """The recipe for the number of shells (None if none reads that many) and why it does not apply (or None)."""
    for recipe in RECIPES.values():
        if len(recipe.shell_ranges) == shells.bvals.size:
            return recipe, recipe.out_of_range(shells)
    counts = " or ".join(str(len(r.shell_ranges)) for r in RECIPES.values())
    return None, f"it has {shells.bvals.size} diffusion-weighted shells; the shipped models read {counts}"


def load_pretrained(
    gtab: GradientTable,
    responses: TissueResponses,
    path: str | Path | None = None,
    *,
    train_config: TrainConfig | None = None,
    device: str | torch.device = "cpu",
) -> SHDModel:
    """The shipped network for the subject's shell layout, bound to its acquisition and responses, ready for
    ``predict``.

    Parameters
    ----------
    gtab : GradientTable
        The subject's acquisition (voxel-axis frame), with b=0 volumes, in the range of a shipped model
        (:data:`RECIPES`: one shell, b = 700-3000 s/mm², 20-150 directions; or three shells).
    responses : TissueResponses
        The subject's responses on those shells (e.g. from :func:`equidmri.recon.pipeline.prepare`): WM alone
        for one shell, WM/GM/CSF for several.
    path : path, optional
        Another checkpoint of the same recipe (default: the shipped one, :func:`pretrained_path`).
    train_config : TrainConfig, optional
        For fine-tuning on the subject (``fit`` continues from the pretrained weights); default the recipe's.

    Raises
    ------
    ValueError
        If the acquisition is outside the models' ranges (the message says why) or the responses are not the
        model's tissues.
    UnsafeCheckpointError
        If the file holds Python objects other than tensors and plain containers.
    """
    recipe = recipe_for(find_shells(gtab.bvals))
    if responses.tissues != recipe.tissues:
        raise ValueError(
            f"the {recipe.name} pretrained model takes responses {recipe.tissues}, got {responses.tissues}"
        )
    state = load_checkpoint(pretrained_path(recipe) if path is None else path)
    network = NetworkConfig.from_dict(state["meta"]["network"])
    train_config = train_config or TrainConfig.from_dict(state["meta"]["train"])
    model = SHDModel(gtab, responses, network, train_config, device=device)
    model.net.load_state_dict(state["state_dict"])
    model.net.eval()
    return model


class SyntheticCohort:
    """A :class:`~equidmri.recon.train.PatchSource` of synthetic phantoms in a recipe's shell layout, one new
    phantom per epoch.

    Epoch ``e`` of process ``rank`` draws its phantom from ``seed``, ``rank`` and ``e`` alone, so a resumed run
    and a distributed run (each process its own phantoms) need no sampling state.

    Parameters
    ----------
    config : TrainConfig
        ``patch_size``, ``batch_size`` (patches per step), ``patches_per_epoch`` (default 32) and ``seed``.
    recipe : PretrainedRecipe
        Shells, directions and network (:data:`SINGLE_SHELL` or :data:`MULTI_SHELL`).
    device : torch.device
    rank : int
        Process rank under ``torch.distributed`` (0 alone).
    supervised : float
        Weight of the supervised term (:func:`~equidmri.recon.train.patch_loss`'s ``fodf``: squared L2 distance
        to the phantom's true fODF, band-limited to lmax :data:`SUPERVISED_LMAX`); 0, the default, trains with the
        paper's unsupervised loss alone.
    """

    def __init__(
        self,
        config: TrainConfig,
        recipe: PretrainedRecipe,
        device: torch.device,
        rank: int = 0,
        supervised: float = 0.0,
    ) -> None:
        if not supervised >= 0:
            raise ValueError(f"the supervised weight must be >= 0, got {supervised}")
        self.config, self.recipe, self.device, self.rank = config, recipe, device, rank
        self.supervised = supervised
        self._last: tuple[int, Any] | None = None  # the latest epoch's subject: the template's is epoch 0's
        self._steps = max(1, (config.patches_per_epoch or 32) // config.batch_size)

    def steps_per_epoch(self) -> int:
        return self._steps

    def subject(self, epoch: int) -> tuple[SHDModel, Any, Tensor, Tensor, Tensor | None]:
        """Phantom of ``epoch``: ``(model, inputs, target, mask, true fODF SH or None)``; the model's net is a
        throw-away copy."""
        if self._last is not None and self._last[0] == epoch:
            return self._last[1]
        for attempt in range(PHANTOM_DRAWS):  # attempt 0's stream is [seed, rank, epoch] (the shipped run's)
            rng = np.random.default_rng([self.config.seed, self.rank, epoch] + ([attempt] if attempt else []))
            shells = self.recipe.draw_shells(rng)
            protocol = make_protocol(
                rng, n_b0=int(rng.integers(N_B0_RANGE[0], N_B0_RANGE[1] + 1)), shells=shells,
                directions_per_shell=TARGET_DIRECTIONS,
            )  # fmt: skip
            phantom = make_phantom(
                PHANTOM_SIZE, protocol, rng, snr=float(rng.uniform(*SNR_RANGE)), lambda_par=LAMBDA_PAR,
                lambda_perp=LAMBDA_PERP,
            )  # fmt: skip
            read = [np.flatnonzero(protocol.bvals == 0)]  # all b=0, a random subset of each shell
            for bval in shells:
                n_input = int(np.exp(rng.uniform(*np.log(self.recipe.input_directions))))
                read.append(rng.choice(np.flatnonzero(protocol.bvals == bval), n_input, replace=False))
            index = np.sort(np.concatenate(read))
            input_gtab = make_gtab(protocol.bvals[index], protocol.bvecs[index])
            input_dwi = phantom.dwi[..., index]
            try:
                responses = estimate_responses(input_dwi, input_gtab, phantom.mask, find_shells(input_gtab.bvals))
                break
            except ValueError as error:  # e.g. no voxel passes the CSF criteria at low SNR: draw another phantom
                failure = error
        else:
            raise RuntimeError(f"no response could be estimated on {PHANTOM_DRAWS} phantoms: {failure}")
        gtab = make_gtab(protocol.bvals, protocol.bvecs)
        model = SHDModel(gtab, responses, self.recipe.network, self.config, input_gtab=input_gtab)
        inputs, target = model._prepare(phantom.dwi, phantom.mask, responses.s0[0], input_dwi)
        truth = torch.from_numpy(phantom.fodf_sh(SUPERVISED_LMAX)) if self.supervised > 0 else None
        self._last = (epoch, (model, inputs, target, torch.from_numpy(phantom.mask), truth))
        return self._last[1]

    def batches(self, epoch: int) -> Iterator[Any]:
        model, inputs, target, mask, truth = self.subject(epoch)
        signal_model = model.signal_model.to(self.device)
        seed = int(np.random.default_rng([self.config.seed, self.rank, epoch, 1]).integers(2**62))
        generator = torch.Generator().manual_seed(seed)
        for _ in range(self._steps):
            slices = sample_patches(mask, self.config.patch_size, self.config.batch_size, generator)
            x = torch.stack([inputs[(slice(None),) + s] for s in slices]).to(self.device)
            y = torch.stack([target[s] for s in slices]).to(self.device)
            m = torch.stack([mask[s] for s in slices]).to(self.device)
            g = None if truth is None else torch.stack([truth[s] for s in slices]).to(self.device)
            yield signal_model, x, y, m, g

    def loss_terms(self, net: nn.Module, batch: Any, loss_fn: DeconvLoss) -> dict[str, Tensor]:
        signal_model, x, y, m, g = batch
        return patch_loss(net, signal_model, loss_fn, x, y, m, fodf_target=g, fodf_weight=self.supervised)

    def state(self) -> Any:
        return None

    def load_state(self, state: Any) -> None:
        pass


def train_pretrained(
    out: str | Path,
    *,
    epochs: int = 400,
    patches_per_epoch: int = 32,
    patch_size: int = 12,
    seed: int = 0,
    resume: bool = False,
    device: str = "cpu",
    progress: bool = True,
    supervised: float = 0.0,
    recipe: PretrainedRecipe = SINGLE_SHELL,
) -> list[dict[str, float]]:
    """Train a pretrained network (``recipe``, as the module docstring says) and write its checkpoint to ``out``.

    ``supervised`` > 0 adds the phantoms' true fODFs to the loss with that weight (:class:`SyntheticCohort`).

    Runs alone or under ``torchrun`` (DDP through :func:`~equidmri.recon.train.run_training`; the caller initialises
    the process group). Returns the per-epoch mean loss terms.
    """
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    config = TrainConfig(
        epochs=epochs, patch_size=patch_size, batch_size=1, patches_per_epoch=patches_per_epoch,
        weights=LossWeights(), seed=seed, checkpoint_every=10,
    )  # fmt: skip
    network = recipe.network
    source = SyntheticCohort(config, recipe, torch.device(device), rank, supervised=supervised)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        template = source.subject(0)[0]
    net = template.net.to(device)
    meta = {
        "network": network.to_dict(),
        "train": config.to_dict(),
        "responses": template.responses.to_dict(),  # of epoch 0's phantom; a subject's own replaces it
        "shells": template.shells.bvals.tolist(),
        "input_shells": template.input_shells.bvals.tolist(),
        "pretrained": {
            "recipe": recipe.name,
            "shell_ranges": [list(r) for r in recipe.shell_ranges],
            "directions": list(recipe.directions),
            "phantom_size": PHANTOM_SIZE,
            "target_directions": TARGET_DIRECTIONS,
            "input_directions": list(recipe.input_directions),
            "snr": list(SNR_RANGE),
            "lambda_par_mm2_s": list(LAMBDA_PAR),
            "lambda_perp_mm2_s": list(LAMBDA_PERP),
            "supervised_weight": supervised,
            "supervised_lmax": SUPERVISED_LMAX,
            "processes": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
            "phantoms_seen": epochs * (torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1),
        },
    }
    return run_training(net, source, config, checkpoint_path=out, meta=meta, resume=resume, progress=progress)
