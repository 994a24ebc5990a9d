"""The settings of a deconvolution network, its loss and its training: plain frozen dataclasses without torch.

:mod:`equidmri.recon.losses`, :mod:`equidmri.recon.model`, :mod:`equidmri.recon.train` and
:mod:`equidmri.recon.infer` use them (and re-export them), and the command line reads its defaults here, so
that ``equidmri deconv --help`` answers without importing torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from equidmri.nn.defaults import DEFAULT_KERNEL_SIZES, DEFAULT_WIDTHS

__all__ = [
    "DEFAULT_TILE",
    "FRACTION_MODES",
    "LEARNING_RATE",
    "LEGACY_ARCHITECTURES",
    "REFINE_STEPS",
    "REFINE_TV",
    "REFINE_TV_VOLUMES",
    "LossWeights",
    "NetworkConfig",
    "TrainConfig",
]

LEARNING_RATE = 1.7e-3  # Adam, SHD reference code (the paper's text says 1.7e-2)
FRACTION_MODES = ("b0", "network", "nnls")  # how the tissue fractions are obtained (equidmri.recon.forward)
LEGACY_ARCHITECTURES = {"shd-tv": "shd"}  # 0.1.0 checkpoints named the SHD-TV method's network after the method
# voxels per tile edge: bounds the peak memory of inference (the feature maps of one tile plus its halo of
# `receptive_radius` voxels); larger tiles recompute fewer halo voxels but hold more in memory
DEFAULT_TILE = 24
# Adam steps (lr 0.01) of the per-voxel refinement of the network's fODFs at inference (equidmri.recon.refine;
# 0: the network's output as it is, the paper's setting). Fewer steps at a larger rate matched 100 on the MRtrix3
# multi-shell volume (issue #23) but not on the phantoms of bench pretrained: 30 steps from lr 0.02, cosine-
# annealed, gave F1 0.748 / 0.858 (29 / 90 directions) where 100 steps at 0.01 gave 0.842 / 0.890
REFINE_STEPS = 100
# Weight of the spatial (TV) term of the refinement at REFINE_TV_VOLUMES fitted volumes: the squared difference of
# the L2-normalised fODFs (SH coefficients, Parseval) of face neighbours, summed over the mask's neighbour pairs
# (the form of the training loss's total_variation). The refinement's data term is the mean squared residual over
# a voxel's F fitted volumes, so a prior of fixed strength against the data's sum of squares (MAP with Gaussian
# noise) has the weight REFINE_TV * REFINE_TV_VOLUMES / F (FODFRefiner.default_tv): 3e-5 at 29 directions, 1.4e-5
# at 64, 9.7e-6 at 90 (docs/pretrained_model.md, "The spatial term at every angular resolution"). 3e-5 at 29 since
# the b=0 volumes left the WM-only refinement (84844d8): development runs, W = 0 / 1e-5 / 3e-5 / 1e-4, validation
# phantoms of another seed (24^3) at 29 directions 6.44 / 6.11 / 5.52 / 4.75 deg (CSD lmax 6 6.85), at 90 4.49 /
# 4.02 / 3.58 / 3.23 deg (CSD lmax 8 4.59); MRtrix3's msmt shells read at 29 directions against MSMT-CSD on all the
# data (docs/results/pretrained_dwfit/subsets.py), main peaks within 25 deg, b=2800 84.5 / 85.2 / 85.5 / 80.2 %,
# b=1200 81.2 / 81.9 / 82.7 / 78.0 %; small_64D read at 29 of 64 83.1 / 83.0 / 82.8 / 83.8 %: 3e-5 is the largest
# weight tried that does not lower real low-resolution agreement
REFINE_TV = 3e-5
REFINE_TV_VOLUMES = 29


@dataclass(frozen=True)
class LossWeights:
    """Weights of the regularisers; defaults are the SHD reference code's SHD-TV configuration.

    Elaldi, Gerig & Dey, NeurIPS 2024, eq. 4.

    Attributes
    ----------
    nn : float
        Non-negativity, ``mean(min(F, 0)^2)``.
    sparsity : float
        Cauchy sparsity, ``mean(2 log(1 + F^2 / (2 sigma)))``, sigma = 1e-5.
    tv : float
        Spatial smoothness of L2-normalised fODFs (0 gives SHD, 0.5 SHD-TV).
    """

    nn: float = 0.1
    sparsity: float = 5e-5
    tv: float = 0.5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value >= 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {value}")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings.

    Attributes
    ----------
    epochs : int
        Passes; one epoch draws ``patches_per_epoch`` patches.
    patch_size : int
        Patch edge in voxels (clipped to the volume).
    batch_size : int
        Patches per optimiser step.
    patches_per_epoch : int or None
        Default: mask voxels / patch voxels, at least ``batch_size``.
    lr : float
        Adam learning rate.
    weights : LossWeights
        Regulariser weights.
    seed : int
        Seeds the initialisation and the patch sampling.
    checkpoint_every : int
        Epochs between checkpoints (the last epoch is always saved).
    """

    epochs: int = 200
    patch_size: int = 16
    batch_size: int = 1
    patches_per_epoch: int | None = None
    lr: float = LEARNING_RATE
    weights: LossWeights = field(default_factory=LossWeights)
    seed: int = 0
    checkpoint_every: int = 10

    def __post_init__(self) -> None:
        for name in ("epochs", "patch_size", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**d, "weights": LossWeights(**d["weights"])})


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of the deconvolution network (see ``SHDUNet``)."""

    model: str = "shd"  # an architecture of equidmri.nn.models.registry.MODELS
    nside: int = 8
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    kernel_sizes: tuple[int, ...] = DEFAULT_KERNEL_SIZES
    cheb_order: int = 5
    kernel: str = "full"
    # how the tissue fractions are obtained (equidmri.recon.forward.FRACTION_MODES): "auto" is "nnls" with
    # several tissues (fractions fitted per voxel to the fODF shape the network gives; issue #23) and "b0"
    # with WM alone (outputs rescaled so the reconstructed b=0 equals the measured one: SHD "normalize")
    fractions: str = "auto"

    def __post_init__(self) -> None:
        if self.fractions not in ("auto",) + FRACTION_MODES:
            raise ValueError(f"fractions must be 'auto' or one of {FRACTION_MODES}, got {self.fractions!r}")

    def fraction_mode(self, n_tissues: int) -> str:
        """The mode of :attr:`fractions` for ``n_tissues`` response functions (resolves ``"auto"``)."""
        if self.fractions != "auto":
            return self.fractions
        return "nnls" if n_tissues > 1 else "b0"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy."""
        return {
            "model": self.model,
            "nside": self.nside,
            "widths": list(self.widths),
            "kernel_sizes": list(self.kernel_sizes),
            "cheb_order": self.cheb_order,
            "kernel": self.kernel,
            "fractions": self.fractions,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkConfig:
        """Inverse of :meth:`to_dict`; reads older checkpoints: 0.1.0 named the SHD-TV network ``shd-tv``, and
        before ``fractions`` a boolean ``match_b0`` chose between ``"b0"`` and ``"network"``."""
        d = dict(d)
        if "match_b0" in d:
            d["fractions"] = "b0" if d.pop("match_b0") else "network"
        model = LEGACY_ARCHITECTURES.get(d["model"], d["model"])
        return cls(**{**d, "model": model, "widths": tuple(d["widths"]), "kernel_sizes": tuple(d["kernel_sizes"])})
