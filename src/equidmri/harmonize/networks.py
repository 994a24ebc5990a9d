"""Torch parts of the learned harmonizers: the residual SH network, a differentiable DTI fit and the losses.

- :class:`SHResidualNet`: per-shell SH coefficients of every shell, stacked on the channel axis, mapped to the
  coefficients of the other site: ``x + linear(x) + MLP(x)``, the MLP with one spatial layer, the project's
  :class:`equidmri.nn.layers.spatial.IsotropicConv3d` (3³ neighbourhood, or voxel-wise with ``kernel_size=1``).
  The skip and the zero-initialised output layers make an untrained network the identity.
- :func:`tensor_fa_md`: FA and MD of a least-squares log-linear diffusion-tensor fit of attenuations, in
  closed form (no eigen-decomposition, so its gradient is defined for isotropic tensors too).
- :func:`cycle_loss`, :func:`moment_loss`: masked cycle-consistency and first/second-moment matching terms.

References
----------
Koppers, Haarburger & Merhof, CDMRI 2016 / MICCAI workshops 2017 (SH residual network for harmonization);
Zhu et al., ICCV 2017 (cycle consistency); Sadegheih, Weninger & Merhof 2023 (WP1: cyclic harmonization with a
DTI loss); Basser, Mattiello & LeBihan, J. Magn. Reson. B 103, 1994 (log-linear tensor fit); Basser &
Pierpaoli, J. Magn. Reson. B 111, 1996 (FA = sqrt(3/2) ||D - MD I|| / ||D||).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from equidmri.nn.layers.spatial import IsotropicConv3d

MIN_ATTENUATION = 1e-3  # attenuations are clamped here before the logarithm of the tensor fit
FA_EPS = 1e-12  # inside the square roots of FA, so that the gradient at D = 0 or an isotropic D is finite

__all__ = [
    "SHResidualNet",
    "cycle_loss",
    "masked_mse",
    "moment_loss",
    "moments",
    "rish_amplitudes",
    "tensor_design",
    "tensor_fa_md",
]


class SHResidualNet(nn.Module):
    """``(B, X, Y, Z, F)`` SH coefficients -> ``(B, X, Y, Z, F)``: ``x + L x + W2 σ(C σ(W1 x))``.

    ``L`` (F × F) and ``W2`` start at zero, so the untrained network is the identity; ``C`` is an isotropic
    3D convolution (``kernel_size`` 3: the 3³ neighbourhood of every voxel; 1: voxel-wise). Inputs are divided
    by ``scale`` (per feature) and outputs multiplied back.

    Parameters
    ----------
    features : int
        F, SH coefficients of all shells together.
    hidden : int
        Channels of the hidden layers.
    kernel_size : {1, 3}
    scale : ndarray, shape ``(F,)``, optional
        Positive per-feature scale of the inputs (default 1).

    Raises
    ------
    ValueError
        If ``features`` or ``hidden`` < 1, the kernel size is not 1 or 3, or ``scale`` has another length.
    """

    def __init__(self, features: int, hidden: int, kernel_size: int = 3, scale: np.ndarray | None = None) -> None:
        super().__init__()
        if features < 1 or hidden < 1:
            raise ValueError(f"features and hidden must be >= 1, got {features} and {hidden}")
        scale = np.ones(features) if scale is None else np.asarray(scale, dtype=np.float64)
        if scale.shape != (features,) or np.any(scale <= 0):
            raise ValueError(f"scale must be ({features},) and positive, got shape {scale.shape}")
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.linear = nn.Linear(features, features)
        self.encode = nn.Linear(features, hidden)
        self.spatial = IsotropicConv3d(hidden, hidden, kernel_size)
        self.decode = nn.Linear(hidden, features)
        for layer in (self.linear, self.decode):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 5 or x.shape[-1] != self.scale.numel():
            raise ValueError(f"expected (B, X, Y, Z, {self.scale.numel()}), got {tuple(x.shape)}")
        z = x / self.scale
        h = nn.functional.gelu(self.spatial(nn.functional.gelu(self.encode(z))[:, None]))[:, 0]
        return x + (self.linear(z) + self.decode(h)) * self.scale


def tensor_design(bvals: np.ndarray, bvecs: np.ndarray) -> np.ndarray:
    """Design matrix ``(N, 6)`` of ``-log E = X d``, d = (Dxx, Dyy, Dzz, Dxy, Dxz, Dyz) in mm²/s.

    Rows ``b · (gx², gy², gz², 2 gx gy, 2 gx gz, 2 gy gz)`` for b in s/mm² and unit b-vectors ``(N, 3)``.
    """
    g = np.asarray(bvecs, dtype=np.float64)
    b = np.asarray(bvals, dtype=np.float64)[:, None]
    return b * np.stack(
        [g[:, 0] ** 2, g[:, 1] ** 2, g[:, 2] ** 2, 2 * g[:, 0] * g[:, 1], 2 * g[:, 0] * g[:, 2], 2 * g[:, 1] * g[:, 2]],
        axis=1,
    )


def tensor_fa_md(attenuation: Tensor, fit: Tensor) -> tuple[Tensor, Tensor]:
    """FA and MD (mm²/s) of the least-squares log-linear tensor fit of diffusion-weighted attenuations.

    Parameters
    ----------
    attenuation : Tensor, shape ``(..., N)``
        ``S / S0`` of N diffusion-weighted samples; clamped below at :data:`MIN_ATTENUATION`.
    fit : Tensor, shape ``(6, N)``
        ``pinv(tensor_design(bvals, bvecs))`` of the N samples.

    Returns
    -------
    fa, md : Tensor, shape ``(...)``
        ``MD = tr(D) / 3``; ``FA = sqrt(3/2) ||D - MD I||_F / ||D||_F``, equal to the eigenvalue formula without
        computing eigenvalues (a tensor with negative eigenvalues may give FA > 1, which dipy clips).

    References
    ----------
    Basser, Mattiello & LeBihan, J. Magn. Reson. B 103, 1994; Basser & Pierpaoli, J. Magn. Reson. B 111, 1996,
    eq. 13.
    """
    d = (-torch.log(attenuation.clamp_min(MIN_ATTENUATION))) @ fit.T
    diagonal, off = d[..., :3], d[..., 3:]
    md = diagonal.mean(-1)
    norm = (diagonal**2).sum(-1) + 2 * (off**2).sum(-1)
    deviation = ((diagonal - md[..., None]) ** 2).sum(-1) + 2 * (off**2).sum(-1)
    fa = torch.sqrt(1.5 * deviation / (norm + FA_EPS) + FA_EPS)
    return fa, md


def masked_mse(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``(a - b)²`` over the voxels of ``mask`` ``(B, X, Y, Z)`` and the trailing feature axis if any."""
    difference = (a - b) ** 2
    if difference.ndim == mask.ndim + 1:
        difference = difference.mean(-1)
    return difference[mask].mean()


def cycle_loss(original: Tensor, cycled: Tensor, mask: Tensor, scale: Tensor) -> Tensor:
    """Cycle consistency ``mean ((G_BA(G_AB(x)) - x) / scale)²`` over the masked voxels; 0 for identities."""
    return masked_mse(cycled / scale, original / scale, mask)


def moment_loss(features: Tensor, mask: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Relative distance of the masked voxels' per-feature mean and standard deviation from a site's:
    ``mean(((μ - μ_site)² + (σ - σ_site)²) / μ_site²)`` (features of positive mean, e.g. RISH amplitudes).

    ``features`` ``(B, X, Y, Z, F)``, ``mask`` ``(B, X, Y, Z)`` bool, ``mean`` and ``std`` ``(F,)``.
    """
    inside = features[mask]
    batch_mean = inside.mean(0)
    batch_std = torch.sqrt(((inside - batch_mean) ** 2).mean(0) + FA_EPS)
    return (((batch_mean - mean) ** 2 + (batch_std - std) ** 2) / mean**2).mean()


def rish_amplitudes(features: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """``sqrt(RISH)`` of every shell and degree: ``(..., F)`` stacked SH coefficients -> ``(..., G)``, where
    ``groups`` ``(F,)`` int gives each coefficient's (shell, degree) group. Rotation invariant and linear in a
    per-shell gain (Mirzaalian et al., NeuroImage 135, 2016, eq. 3, square-rooted)."""
    energy = torch.zeros(features.shape[:-1] + (n_groups,), dtype=features.dtype)
    return torch.sqrt(energy.index_add(-1, groups, features**2) + FA_EPS)


def moments(features: list[np.ndarray], masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation ``(F,)`` over the masked voxels of several ``(X, Y, Z, F)``."""
    inside = np.concatenate([f[m] for f, m in zip(features, masks)])
    return inside.mean(0), np.maximum(inside.std(0), math.sqrt(FA_EPS))
