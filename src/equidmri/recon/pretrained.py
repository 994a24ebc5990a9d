"""The shipped, pretrained single-shell SHD-TV network: its recipe, its protocol range and its loading.

The network is trained once, unsupervised (SHD eq. 4 with the SHD-TV weights), on a synthetic cohort that
:class:`SyntheticCohort` draws on the fly: one new phantom per epoch (:func:`equidmri.sims.phantoms.make_phantom`,
random bundles, crossings, a CSF-like blob), each with its own shell (b = 700-3000 s/mm²), diffusivities, SNR
(10-50) and direction set, and each read at a random lower angular resolution (20-90 of its 90 directions) while the
loss reconstructs all 90 (angular super-resolution, SHD paper §4.2.1). The response of every phantom is estimated
from the low-resolution series, as :func:`equidmri.recon.pipeline.prepare` does on a user's volume, so the network
learns to deconvolve with the responses it will be given. The network reads the signal interpolated onto its
HEALPix grid, so it does not depend on the directions of an acquisition; it accepts any protocol in
:data:`PROTOCOL_RANGE`.

The weights ship as package data (:data:`PRETRAINED_FILE`, a checkpoint read with ``weights_only=True``).
"""

from __future__ import annotations

from collections.abc import Iterator
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
    "PRETRAINED_FILE",
    "PRETRAINED_NETWORK",
    "PROTOCOL_RANGE",
    "SyntheticCohort",
    "load_pretrained",
    "out_of_range",
    "pretrained_path",
    "train_pretrained",
]

PRETRAINED_FILE = "shd_tv_single_shell.pt"  # in equidmri/models/
# voxel-wise (kernel size 1 at every level) and narrow: 3.4x faster inference than 3x3x3 kernels at the finest
# level on 2 CPU cores (7900 vs 2300 voxels/s, 30 directions, development measurement); TV still shapes training
PRETRAINED_NETWORK = NetworkConfig(widths=(4, 8, 16, 32), kernel_sizes=(1, 1, 1, 1), fractions="b0")
PROTOCOL_RANGE = {  # what the shipped model accepts: one DW shell, b=0 volumes, this b-value and direction range
    "shells": 1,
    "bval_min": 700.0,  # s/mm²
    "bval_max": 3000.0,
    "directions_min": 20,
    "directions_max": 150,
}
TARGET_DIRECTIONS = 90  # directions of each training phantom's shell (the loss's high-resolution series)
INPUT_DIRECTIONS = (20, 90)  # range of the directions the network reads in training
SNR_RANGE = (10.0, 50.0)
N_B0_RANGE = (1, 6)
LAMBDA_PAR = (1.3e-3, 2.1e-3)  # mm²/s; wider than the phantom set's so that the responses vary
LAMBDA_PERP = (0.1e-3, 0.6e-3)
PHANTOM_SIZE = 24  # voxels per edge of a training phantom
SUPERVISED_LMAX = 8  # degree of the true fODF the supervised term compares with (that of fod.nii.gz)


def pretrained_path() -> Path:
    """Path of the shipped checkpoint inside the installed package."""
    return Path(str(resources.files("equidmri") / "models" / PRETRAINED_FILE))


def out_of_range(shells: Shells) -> str | None:
    """Why an acquisition is outside :data:`PROTOCOL_RANGE` (one line), or None if the shipped model accepts it."""
    r = PROTOCOL_RANGE
    if shells.bvals.size != r["shells"]:
        return f"it has {shells.bvals.size} diffusion-weighted shells; the shipped model reads one"
    b, n = float(shells.bvals[0]), int(shells.n_directions[0])
    if not r["bval_min"] <= b <= r["bval_max"]:
        return f"its shell is b={b:g} s/mm², outside the shipped model's {r['bval_min']:g}-{r['bval_max']:g}"
    if not r["directions_min"] <= n <= r["directions_max"]:
        return f"its shell has {n} directions, outside the shipped model's {r['directions_min']}-{r['directions_max']}"
    return None


def load_pretrained(
    gtab: GradientTable,
    responses: TissueResponses,
    path: str | Path | None = None,
    *,
    train_config: TrainConfig | None = None,
    device: str | torch.device = "cpu",
) -> SHDModel:
    """The shipped network bound to a subject's acquisition and WM response, ready for ``predict``.

    Parameters
    ----------
    gtab : GradientTable
        The subject's acquisition (voxel-axis frame), one shell within :data:`PROTOCOL_RANGE`, with b=0 volumes.
    responses : TissueResponses
        The subject's WM response on that shell (e.g. from :func:`equidmri.recon.pipeline.prepare`).
    path : path, optional
        Another checkpoint of the same recipe (default: the shipped :func:`pretrained_path`).
    train_config : TrainConfig, optional
        For fine-tuning on the subject (``fit`` continues from the pretrained weights); default the recipe's.

    Raises
    ------
    ValueError
        If the acquisition is outside the model's range (the message says why) or the responses are not WM alone.
    UnsafeCheckpointError
        If the file holds Python objects other than tensors and plain containers.
    """
    reason = out_of_range(find_shells(gtab.bvals))
    if reason is not None:
        raise ValueError(f"the pretrained model does not apply: {reason}")
    if responses.tissues != ("wm",):
        raise ValueError(f"the pretrained model takes a WM response alone, got tissues {responses.tissues}")
    state = load_checkpoint(pretrained_path() if path is None else path)
    network = NetworkConfig.from_dict(state["meta"]["network"])
    train_config = train_config or TrainConfig.from_dict(state["meta"]["train"])
    model = SHDModel(gtab, responses, network, train_config, device=device)
    model.net.load_state_dict(state["state_dict"])
    model.net.eval()
    return model


class SyntheticCohort:
    """A :class:`~equidmri.recon.train.PatchSource` of synthetic single-shell phantoms, one new phantom per epoch.

    Epoch ``e`` of process ``rank`` draws its phantom from ``seed``, ``rank`` and ``e`` alone, so a resumed run
    and a distributed run (each process its own phantoms) need no sampling state.

    Parameters
    ----------
    config : TrainConfig
        ``patch_size``, ``batch_size`` (patches per step), ``patches_per_epoch`` (default 32) and ``seed``.
    network : NetworkConfig
    device : torch.device
    rank : int
        Process rank under ``torch.distributed`` (0 alone).
    supervised : float
        Weight of the supervised term (:func:`~equidmri.recon.train.patch_loss`'s ``fodf``: squared L2 distance
        to the phantom's true fODF, band-limited to lmax :data:`SUPERVISED_LMAX`); 0, the default, trains with the
        paper's unsupervised loss alone.
    """

    def __init__(
        self, config: TrainConfig, network: NetworkConfig, device: torch.device, rank: int = 0, supervised: float = 0.0
    ) -> None:
        if not supervised >= 0:
            raise ValueError(f"the supervised weight must be >= 0, got {supervised}")
        self.config, self.network, self.device, self.rank = config, network, device, rank
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
        rng = np.random.default_rng([self.config.seed, self.rank, epoch])
        bval = float(np.round(rng.uniform(PROTOCOL_RANGE["bval_min"], PROTOCOL_RANGE["bval_max"]), -1))
        protocol = make_protocol(
            rng, n_b0=int(rng.integers(N_B0_RANGE[0], N_B0_RANGE[1] + 1)), shells=(bval,),
            directions_per_shell=TARGET_DIRECTIONS,
        )  # fmt: skip
        phantom = make_phantom(
            PHANTOM_SIZE, protocol, rng, snr=float(rng.uniform(*SNR_RANGE)), lambda_par=LAMBDA_PAR,
            lambda_perp=LAMBDA_PERP,
        )  # fmt: skip
        n_input = int(np.exp(rng.uniform(*np.log(INPUT_DIRECTIONS))))
        b0 = np.flatnonzero(protocol.bvals == 0)
        shell = np.flatnonzero(protocol.bvals > 0)
        index = np.sort(np.concatenate([b0, rng.choice(shell, n_input, replace=False)]))
        gtab = make_gtab(protocol.bvals, protocol.bvecs)
        input_gtab = make_gtab(protocol.bvals[index], protocol.bvecs[index])
        input_dwi = phantom.dwi[..., index]
        responses = estimate_responses(input_dwi, input_gtab, phantom.mask, find_shells(input_gtab.bvals))
        model = SHDModel(gtab, responses, self.network, self.config, input_gtab=input_gtab)
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
) -> list[dict[str, float]]:
    """Train the pretrained network (the recipe of the module docstring) and write its checkpoint to ``out``.

    ``supervised`` > 0 adds the phantoms' true fODFs to the loss with that weight (:class:`SyntheticCohort`).

    Runs alone or under ``torchrun`` (DDP through :func:`~equidmri.recon.train.run_training`; the caller initialises
    the process group). Returns the per-epoch mean loss terms.
    """
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    config = TrainConfig(
        epochs=epochs, patch_size=patch_size, batch_size=1, patches_per_epoch=patches_per_epoch,
        weights=LossWeights(), seed=seed, checkpoint_every=10,
    )  # fmt: skip
    network = PRETRAINED_NETWORK
    source = SyntheticCohort(config, network, torch.device(device), rank, supervised=supervised)
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
            "protocol_range": PROTOCOL_RANGE,
            "phantom_size": PHANTOM_SIZE,
            "target_directions": TARGET_DIRECTIONS,
            "input_directions": list(INPUT_DIRECTIONS),
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
