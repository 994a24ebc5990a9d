"""Learned harmonizers on per-shell SH coefficients: the SH-ResNet and the cyclic network (issue 20 §2).

Both work in the space of the baseline and RISH (:mod:`equidmri.harmonize.shells`): each shell's attenuation
``S / S0`` is fitted with SH on its own directions at the degree both protocols support, and the coefficients of
all shells, stacked (F features per voxel), are what a network changes; the result is evaluated at B's
directions and multiplied by A's mean b=0, as for RISH. Networks: :class:`equidmri.harmonize.networks.SHResidualNet`.

- :class:`SHResNetHarmonizer` (after Koppers et al.): a voxel-wise residual network A → B, trained supervised on
  the paired training subjects with the MSE of the signal at B's directions.
- :class:`CyclicHarmonizer` (after Sadegheih, Weninger & Merhof 2023, WP1): generators A → B and B → A with a
  3³ spatial context, trained with cycle consistency and a distribution term on unpaired scans of both sites,
  plus, on the paired subjects, the signal MSE and a DTI loss (FA and MD of the harmonized signal from a
  differentiable tensor fit, against those of B). ``paired_percent`` chooses the mode: 0 unsupervised, 100
  supervised, in between semi-supervised on the nested subsets of
  :func:`equidmri.harmonize.subjects.paired_subset`.

The distribution term matches the first and second moments of every SH feature of ``G_AB(A)`` to site B's (and of
``G_BA(B)`` to A's) instead of training a discriminator: on the CPU budget of the bench (seconds per mode), an
adversarial game is unstable and slow to converge, while moment matching (an MMD with a quadratic kernel) has
the same fixed point for the global per-shell gains and noise levels that separate the sites.

Training draws ``batch`` random ``crop``³ blocks of scans per step, for ``steps`` Adam steps with a fixed
learning rate; the validation subjects are not used (no early stopping). Every setting is a constructor option,
stored in model files (:mod:`equidmri.harmonize.model_file`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from equidmri.dmri.gradients import LMAX_CAP
from equidmri.dmri.io import DWIData
from equidmri.harmonize.networks import (
    SHResidualNet,
    cycle_loss,
    masked_mse,
    moment_loss,
    moments,
    rish_amplitudes,
    tensor_design,
    tensor_fa_md,
)
from equidmri.harmonize.sh_methods import SHHarmonizer
from equidmri.harmonize.shells import ShellPair, attenuation, match_shells, mean_b0
from equidmri.harmonize.subjects import PairedSubject, paired_subset
from equidmri.sphere.sh import degrees, n_coeffs

logger = logging.getLogger(__name__)

MD_UNIT = 1e3  # MD in µm²/ms (1e-3 mm²/s) inside the DTI loss, so that FA and MD errors weigh alike
CYCLE_WEIGHT, DISTRIBUTION_WEIGHT, SIGNAL_WEIGHT, DTI_WEIGHT = 1.0, 1.0, 1.0, 1.0  # loss terms of the cyclic net

__all__ = ["CyclicHarmonizer", "LearnedSHHarmonizer", "SHResNetHarmonizer"]


@dataclass(frozen=True, eq=False)
class _Features:
    """The training scans in SH space: site A's and B's features ``(X, Y, Z, F)`` float32 with their masks, the
    paired scans (index into A, index into B), and what the losses need (tensors)."""

    a: list[np.ndarray]
    mask_a: list[np.ndarray]
    b: list[np.ndarray]
    mask_b: list[np.ndarray]
    pairs: list[tuple[int, int]]
    evaluate: Tensor  # (F, N_dw): SH features -> attenuation at B's diffusion-weighted directions
    tensor_fit: Tensor  # (6, N_dw): pinv of the tensor design of B's diffusion-weighted volumes
    b_signal_variance: float  # variance of B's attenuation over the masked voxels: the signal losses' unit


class LearnedSHHarmonizer(SHHarmonizer):
    """A network on the stacked per-shell SH coefficients; subclasses define the networks and their training.

    Parameters
    ----------
    lmax : int
        Highest even SH degree per shell.
    hidden : int
        Hidden channels of the networks.
    steps : int
        Adam steps.
    batch : int
        Scans (or pairs) per step and loss term.
    crop : int
        Edge of the random training blocks, voxels (whole scans where they are smaller).
    learning_rate : float
    seed : int
        Initial weights, blocks and the paired subset.

    Raises
    ------
    ValueError
        If a size or the learning rate is not positive.
    """

    kernel_size = 3

    def __init__(
        self,
        *,
        lmax: int = LMAX_CAP,
        hidden: int = 16,
        steps: int = 200,
        batch: int = 2,
        crop: int = 16,
        learning_rate: float = 3e-3,
        seed: int = 0,
    ) -> None:
        super().__init__(lmax=lmax)
        settings = {"hidden": hidden, "steps": steps, "batch": batch, "crop": crop, "learning_rate": learning_rate}
        bad = {key: value for key, value in settings.items() if not value > 0}
        if bad:
            raise ValueError(f"training settings must be positive, got {bad}")
        self.hidden, self.steps, self.batch, self.crop = hidden, steps, batch, crop
        self.learning_rate, self.seed = learning_rate, seed
        self.layout: list[tuple[float, int]] | None = None  # (b-value, lmax) of each stacked shell
        self.network: SHResidualNet | None = None  # A -> B
        self.paired_indices: list[int] = []  # training scans whose pairing the last fit used
        self.losses: list[float] = []  # total loss of each step of the last fit
        self._fit_pairs: list[tuple[int, int]] = []
        self.progress = False  # a tqdm bar over the training steps (the CLI turns it on); not part of the model

    # -- fitting ---------------------------------------------------------------------------------------------
    def fit(self, train: Sequence[PairedSubject]) -> LearnedSHHarmonizer:
        """Learn from the training subjects; the pairs used are :meth:`paired_subjects` of ``train``.

        Raises
        ------
        ValueError
            As :meth:`fit_sites`.
        """
        chosen = {id(subject) for subject in self.paired_subjects(train)}
        pairs = [(i, i) for i, subject in enumerate(train) if id(subject) in chosen]
        return self.fit_sites([s.a for s in train], [s.b for s in train], pairs=pairs)

    def paired_subjects(self, train: Sequence[PairedSubject]) -> list[PairedSubject]:
        """The training subjects whose A-B pairing :meth:`fit` uses (all of them here)."""
        return list(train)

    def fit_sites(
        self, site_a: Sequence[DWIData], site_b: Sequence[DWIData], pairs: Sequence[tuple[int, int]] = ()
    ) -> LearnedSHHarmonizer:
        """Learn from scans of the two sites; ``pairs`` lists ``(i, j)``: ``site_a[i]`` and ``site_b[j]`` are one
        subject on one grid (the paired loss terms use them).

        Raises
        ------
        ValueError
            As :meth:`SHHarmonizer.fit_sites`; if a pair's indices are out of range or its grids differ, the
            site-A scans do not share shells and SH degrees, or the method needs pairs and has none.
        """
        for i, j in pairs:
            if not (0 <= i < len(site_a) and 0 <= j < len(site_b)):
                raise ValueError(f"pair ({i}, {j}) is out of range for {len(site_a)} A and {len(site_b)} B scans")
            if site_a[i].dwi.shape[:3] != site_b[j].dwi.shape[:3]:
                raise ValueError(f"paired scans A[{i}] and B[{j}] must share the grid")
        self._fit_pairs = list(pairs)
        return super().fit_sites(site_a, site_b)

    def _learn(self, site_a: Sequence[DWIData], site_b: Sequence[DWIData]) -> None:
        data = self._features(site_a, site_b, self._fit_pairs)
        self.paired_indices = sorted({i for i, _ in data.pairs})
        with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's global RNG is left as it was
            torch.manual_seed(self.seed)
            self.losses = self._train(data, np.random.default_rng(self.seed))
        logger.info(
            "%s: loss %.4g -> %.4g in %d steps", type(self).__name__, self.losses[0], self.losses[-1], self.steps
        )

    def _features(
        self, site_a: Sequence[DWIData], site_b: Sequence[DWIData], pairs: Sequence[tuple[int, int]]
    ) -> _Features:
        """Both sites' scans as stacked SH coefficients on B's degrees, and B's evaluation and tensor fit."""
        a_features, a_masks, shell_pairs = [], [], None
        for number, scan in enumerate(site_a, start=1):
            scan_pairs = match_shells(scan.bvals, scan.bvecs, self.reference_bvals, self.reference_bvecs, self.lmax)
            layout = [(pair.bval, pair.lmax) for pair in scan_pairs]
            if shell_pairs is None:
                shell_pairs, self.layout = scan_pairs, layout
            elif layout != self.layout:
                raise ValueError(f"site-A scan {number} has shells/SH degrees {layout}, the first {self.layout}")
            a_features.append(self._stack(scan.dwi, scan.bvals, scan_pairs))
            a_masks.append(_mask(scan))
        b_features = [self._stack(scan.dwi, scan.bvals, shell_pairs, target=True) for scan in site_b]
        b_masks = [_mask(scan) for scan in site_b]
        evaluate = _block_diagonal([pair.eval_target.T for pair in shell_pairs])
        volumes = np.concatenate([pair.target for pair in shell_pairs])
        fit = np.linalg.pinv(tensor_design(self.reference_bvals[volumes], self.reference_bvecs[volumes]))
        b_signal = np.concatenate([f[m] for f, m in zip(b_features, b_masks)]) @ evaluate
        return _Features(
            a=a_features,
            mask_a=a_masks,
            b=b_features,
            mask_b=b_masks,
            pairs=list(pairs),
            evaluate=torch.as_tensor(evaluate, dtype=torch.float32),
            tensor_fit=torch.as_tensor(fit, dtype=torch.float32),
            b_signal_variance=float(np.var(b_signal)),
        )

    @staticmethod
    def _stack(dwi: np.ndarray, bvals: np.ndarray, pairs: list[ShellPair], target: bool = False) -> np.ndarray:
        """SH coefficients of every shell of a scan, stacked: ``(X, Y, Z, F)`` float32; ``target``: the scan is on
        B's protocol (the pairs' target side)."""
        signal = attenuation(dwi, bvals)
        parts = [
            signal[..., pair.target] @ pair.fit_target.T if target else signal[..., pair.source] @ pair.fit_source.T
            for pair in pairs
        ]
        return np.concatenate(parts, axis=-1).astype(np.float32)

    def _train(self, data: _Features, rng: np.random.Generator) -> list[float]:
        """Build and train the networks; the loss of each step."""
        raise NotImplementedError

    # -- applying --------------------------------------------------------------------------------------------
    def _transform_shells(self, coeffs: list[np.ndarray], pairs: list[ShellPair]) -> list[np.ndarray]:
        layout = [(pair.bval, pair.lmax) for pair in pairs]
        if layout != self.layout:
            raise ValueError(
                f"the model was trained on shells/SH degrees {self.layout} (b in s/mm², lmax); this scan gives {layout}"
            )
        stacked = torch.as_tensor(np.concatenate(coeffs, axis=-1), dtype=torch.float32)[None]
        with torch.no_grad():
            out = self.network(stacked)[0].double().numpy()
        return np.split(out, np.cumsum([n_coeffs(lmax) for _, lmax in layout])[:-1], axis=-1)

    # -- model files -----------------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        return {
            **super().options(),
            "hidden": self.hidden,
            "steps": self.steps,
            "batch": self.batch,
            "crop": self.crop,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
        }

    def state(self) -> dict[str, Any]:
        base = super().state()
        return {
            **base,
            "layout_bvals": np.array([b for b, _ in self.layout]),
            "layout_lmax": np.array([lmax for _, lmax in self.layout]),
            "network": {key: value.numpy() for key, value in self.network.state_dict().items()},
            "paired_indices": np.array(self.paired_indices, dtype=np.int64),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.layout = [(float(b), int(lmax)) for b, lmax in zip(state["layout_bvals"], state["layout_lmax"])]
        self.network = self._network()
        self.network.load_state_dict({key: torch.as_tensor(value) for key, value in state["network"].items()})
        self.network.eval()
        self.paired_indices = [int(i) for i in state["paired_indices"]]

    def _network(self, scale: np.ndarray | None = None) -> SHResidualNet:
        features = sum(n_coeffs(lmax) for _, lmax in self.layout)
        return SHResidualNet(features, self.hidden, self.kernel_size, scale)

    # -- training helpers ------------------------------------------------------------------------------------
    def _blocks(self, rng: np.random.Generator, volumes: list[list[np.ndarray]], count: int) -> list[Tensor]:
        """``count`` random blocks of the same ``crop``³ window of the arrays in each of ``volumes`` (one list per
        scan or pair, arrays ``(X, Y, Z, ...)`` on one grid), stacked per array: tensors ``(count, c, c, c, ...)``."""
        shapes = np.array([group[0].shape[:3] for group in volumes])
        edge = np.minimum(self.crop, shapes.min(0))
        picks = rng.integers(len(volumes), size=count)
        stacks: list[list[np.ndarray]] = [[] for _ in volumes[0]]
        for pick in picks:
            corner = [rng.integers(size - e + 1) for size, e in zip(shapes[pick], edge)]
            window = tuple(slice(c, c + e) for c, e in zip(corner, edge))
            for stack, array in zip(stacks, volumes[pick]):
                stack.append(array[window])
        return [torch.as_tensor(np.stack(stack)) for stack in stacks]

    def _optimize(self, parameters: list[Tensor], step_loss: Callable[[], Tensor]) -> list[float]:
        """``steps`` Adam steps on ``step_loss()``; the network is left in eval mode. The loss of each step."""
        optimizer = torch.optim.Adam(parameters, lr=self.learning_rate)
        losses = []
        bar = tqdm(range(self.steps), desc=f"training {type(self).__name__}", unit="step", disable=not self.progress)
        for _ in bar:
            loss = step_loss()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        self.network.eval()
        return losses

    def _paired_loss(self, network: SHResidualNet, data: _Features, blocks: list[Tensor], dti: bool) -> Tensor:
        """Signal MSE at B's directions (in units of B's signal variance) of ``network(A)`` against B, plus, with
        ``dti``, the MSE of FA and MD (µm²/ms) of the tensor fit of both."""
        a, b, mask = blocks
        predicted, target = network(a) @ data.evaluate, b @ data.evaluate
        loss = SIGNAL_WEIGHT * masked_mse(predicted, target, mask) / data.b_signal_variance
        if dti:
            (fa, md), (fa_b, md_b) = (tensor_fa_md(signal, data.tensor_fit) for signal in (predicted, target))
            loss = loss + DTI_WEIGHT * (masked_mse(fa, fa_b, mask) + masked_mse(md * MD_UNIT, md_b * MD_UNIT, mask))
        return loss


def _mask(scan: DWIData) -> np.ndarray:
    return scan.mask if scan.mask is not None else mean_b0(scan.dwi, scan.bvals) > 0


def _block_diagonal(blocks: list[np.ndarray]) -> np.ndarray:
    rows, cols = sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)
    out = np.zeros((rows, cols))
    r = c = 0
    for block in blocks:
        out[r : r + block.shape[0], c : c + block.shape[1]] = block
        r, c = r + block.shape[0], c + block.shape[1]
    return out


def _feature_scale(features: list[np.ndarray], masks: list[np.ndarray]) -> np.ndarray:
    return moments(features, masks)[1]


class SHResNetHarmonizer(LearnedSHHarmonizer):
    """Supervised residual network A → B on the stacked per-shell SH coefficients, voxel by voxel.

    Trained on every paired training subject with the signal MSE at B's directions; needs pairs
    (``fit_sites`` without ``pairs`` raises ``ValueError``). Departures from Koppers et al.: one network for all
    shells (theirs maps shells separately), an isotropic hidden layer of ``hidden`` channels, a linear skip.

    References
    ----------
    Koppers, Haarburger & Merhof, "Diffusion MRI signal augmentation: from single shell to multi shell with deep
    learning", CDMRI 2016; Koppers et al., "Spherical harmonic residual network for diffusion signal
    harmonization", CDMRI 2018.
    """

    kernel_size = 1

    def _train(self, data: _Features, rng: np.random.Generator) -> list[float]:
        if not data.pairs:
            raise ValueError("the SH-ResNet is supervised: it needs paired scans of the two sites")
        self.network = self._network(_feature_scale(data.a, data.mask_a))
        groups = [[data.a[i], data.b[j], data.mask_a[i] & data.mask_b[j]] for i, j in data.pairs]
        return self._optimize(
            list(self.network.parameters()),
            lambda: self._paired_loss(self.network, data, self._blocks(rng, groups, self.batch), dti=False),
        )


class CyclicHarmonizer(LearnedSHHarmonizer):
    """Cyclic harmonization: generators A → B and B → A with a 3³ context; unsupervised, semi- or supervised.

    Each step draws ``batch`` blocks of A scans and of B scans independently (unpaired) for
    ``CYCLE_WEIGHT`` × cycle consistency (:func:`~equidmri.harmonize.networks.cycle_loss`, both directions) +
    ``DISTRIBUTION_WEIGHT`` × moment matching (:func:`~equidmri.harmonize.networks.moment_loss`: ``G_AB(A)`` to
    site B's per-feature mean and sd over all training scans, ``G_BA(B)`` to A's); when pairs exist, ``batch``
    paired blocks add ``SIGNAL_WEIGHT`` × the signal MSE of ``G_AB(A)`` against B and ``DTI_WEIGHT`` × the FA and
    MD errors of their differentiable tensor fits (:func:`~equidmri.harmonize.networks.tensor_fa_md`).

    Parameters
    ----------
    paired_percent : float
        Share of the training subjects whose pairing :meth:`fit` uses (the nested subsets of
        :func:`~equidmri.harmonize.subjects.paired_subset`, seeded by ``seed``): 0 unsupervised, 100 supervised.
    **settings
        As :class:`LearnedSHHarmonizer`.

    Raises
    ------
    ValueError
        If ``paired_percent`` is outside [0, 100], or as :class:`LearnedSHHarmonizer`.

    References
    ----------
    Sadegheih, Weninger & Merhof 2023 (WP1); Zhu et al., ICCV 2017 (CycleGAN); Gretton et al., JMLR 13, 2012
    (MMD; moment matching is its quadratic-kernel case).
    """

    def __init__(self, *, paired_percent: float = 0.0, **settings: Any) -> None:
        super().__init__(**settings)
        if not 0 <= paired_percent <= 100:
            raise ValueError(f"paired_percent must lie in [0, 100], got {paired_percent}")
        self.paired_percent = float(paired_percent)
        self.backward_network: SHResidualNet | None = None  # B -> A, for training only (not saved)

    def paired_subjects(self, train: Sequence[PairedSubject]) -> list[PairedSubject]:
        """``paired_subset(train, paired_percent, seed)``: nested across percentages."""
        return paired_subset(train, self.paired_percent, self.seed)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "paired_percent": self.paired_percent}

    def _train(self, data: _Features, rng: np.random.Generator) -> list[float]:
        scale = _feature_scale(data.a, data.mask_a)
        self.network, self.backward_network = self._network(scale), self._network(scale)
        parameters = [*self.network.parameters(), *self.backward_network.parameters()]
        lmaxes = [lmax for _, lmax in self.layout]
        starts = [0] + [lmax // 2 + 1 for lmax in lmaxes[:-1]]  # first (shell, degree) group of each shell
        groups = torch.as_tensor(
            np.concatenate([offset + degrees(lmax) // 2 for offset, lmax in zip(np.cumsum(starts), lmaxes)])
        )
        n_groups = int(groups.max()) + 1

        def invariants(features: Tensor) -> Tensor:
            return rish_amplitudes(features, groups, n_groups)

        (mean_a, std_a), (mean_b, std_b) = (
            tuple(
                torch.as_tensor(value, dtype=torch.float32)
                for value in moments([invariants(torch.as_tensor(x)).numpy() for x in f], m)
            )
            for f, m in ((data.a, data.mask_a), (data.b, data.mask_b))
        )
        site_a = [[f, m] for f, m in zip(data.a, data.mask_a)]
        site_b = [[f, m] for f, m in zip(data.b, data.mask_b)]
        pairs = [[data.a[i], data.b[j], data.mask_a[i] & data.mask_b[j]] for i, j in data.pairs]
        scale_t = self.network.scale

        def step_loss() -> Tensor:
            (a, mask_a), (b, mask_b) = self._blocks(rng, site_a, self.batch), self._blocks(rng, site_b, self.batch)
            fake_b, fake_a = self.network(a), self.backward_network(b)
            loss = CYCLE_WEIGHT * (
                cycle_loss(a, self.backward_network(fake_b), mask_a, scale_t)
                + cycle_loss(b, self.network(fake_a), mask_b, scale_t)
            ) + DISTRIBUTION_WEIGHT * (
                moment_loss(invariants(fake_b), mask_a, mean_b, std_b)
                + moment_loss(invariants(fake_a), mask_b, mean_a, std_a)
            )
            if pairs:
                loss = loss + self._paired_loss(self.network, data, self._blocks(rng, pairs, self.batch), dti=True)
            return loss

        return self._optimize(parameters, step_loss)
