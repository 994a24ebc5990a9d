"""Layers on SH coefficients and activations in either space: per-degree channel mixing (rotation-equivariant) and a
nonlinearity applied to the coefficients or to the function they describe on a HEALPix grid.

A rotation R acts on real SH coefficients of degree l by a ``(2l+1) x (2l+1)`` matrix (a Wigner D-matrix in the real
basis) and never mixes degrees. A linear map that mixes channels with one weight matrix per degree, the same for
every order m of that degree, therefore commutes with every rotation; a bias is allowed only on l = 0 (the mean),
which rotations leave alone (Cohen et al., ICLR 2018, §4; DELIMIT, Koppers & Merhof, MICCAI 2021; e3nn's
``o3.Linear`` is the same map for irreps). A pointwise nonlinearity on the coefficients breaks the equivariance
(it mixes nothing across m, but it is not a function of the rotation-invariant per-degree norms); applied to the
function on a dense sampling of the sphere and projected back, it is equivariant up to the sampling error (Cohen et
al. 2018; Esteves et al., ECCV 2018, §3.3 — the contrast of the seed report's Figs. 2-3).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from equidmri.nn.layers.grid import SphereGrid
from equidmri.sphere.sh import check_lmax, degrees, sh_fit_matrix, sh_matrix

__all__ = ["SHDegreeLinear", "SHSpaceActivation", "SignalSpaceActivation"]


class SHDegreeLinear(nn.Module):
    """Channel mixing per SH degree: ``(B, C_in, K)`` -> ``(B, C_out, K)``, ``y_lm = W_l x_lm`` (+ bias on l = 0).

    Parameters
    ----------
    in_channels, out_channels : int
    lmax : int
        Even maximal degree; K = (lmax+1)(lmax+2)/2 coefficients (dipy order: l ascending, m = -l..l).
    bias : bool
        A learned bias on the l = 0 coefficient of each output channel.

    Raises
    ------
    ValueError
        If a channel count is below 1 or ``lmax`` is not even and >= 0; in ``forward``, if the input is not
        ``(B, C_in, K)``.

    References
    ----------
    Koppers & Merhof, "DELIMIT", MICCAI 2021 (SH-space convolutions); Cohen, Geiger, Köhler & Welling, "Spherical
    CNNs", ICLR 2018, eq. 7 (the convolution theorem: one weight per degree).
    """

    def __init__(self, in_channels: int, out_channels: int, lmax: int, bias: bool = True) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channel counts must be >= 1, got {in_channels} -> {out_channels}")
        self.in_channels, self.out_channels, self.lmax = in_channels, out_channels, check_lmax(lmax)
        self.register_buffer("degree_index", torch.as_tensor(degrees(lmax) // 2), persistent=False)  # (K,) -> l/2
        n_degrees = lmax // 2 + 1
        self.weight = nn.Parameter(torch.randn(n_degrees, out_channels, in_channels) / math.sqrt(in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[1] != self.in_channels or x.shape[2] != self.degree_index.numel():
            raise ValueError(f"expected (B, {self.in_channels}, {self.degree_index.numel()}), got {tuple(x.shape)}")
        weight = self.weight[self.degree_index]  # (K, C_out, C_in)
        out = torch.einsum("koi,bik->bok", weight, x)
        if self.bias is not None:
            out = torch.cat([out[..., :1] + self.bias[:, None], out[..., 1:]], dim=-1)
        return out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, lmax={self.lmax}, bias={self.bias is not None}"


class _GridActivation(nn.Module):
    """A nonlinearity between SH coefficients and values on the HEALPix pixels of ``grid`` (float64 geometry, cast
    to the default dtype; non-persistent buffers ``basis`` ``(V, K)`` and ``fit`` ``(K, V)``, least squares)."""

    def __init__(self, activation: nn.Module, grid: SphereGrid, lmax: int, sh_basis: str = "descoteaux07") -> None:
        super().__init__()
        self.activation, self.grid, self.lmax = activation, grid, check_lmax(lmax)
        vertices = np.asarray(grid.vertices)
        for name, matrix in (
            ("basis", sh_matrix(vertices, lmax, sh_basis)),
            ("fit", sh_fit_matrix(vertices, lmax, sh_basis)),
        ):
            self.register_buffer(name, torch.tensor(matrix).to(torch.get_default_dtype()), persistent=False)

    def extra_repr(self) -> str:
        return f"nside={self.grid.nside}, hemisphere={self.grid.hemisphere}, lmax={self.lmax}"


class SignalSpaceActivation(_GridActivation):
    """A pointwise nonlinearity applied in signal space to SH features: ``(B, C, K)`` -> ``(B, C, K)``.

    The coefficients are evaluated on the HEALPix pixels of ``grid``, ``activation`` is applied to the values and
    the result is projected back onto degrees <= lmax by least squares. Equivariant to rotations up to the grid's
    sampling (and the band-limit truncation of the nonlinearity's output).

    Raises
    ------
    ValueError
        If the grid has fewer pixels than K (the projection would be underdetermined).
    """

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(x @ self.basis.T.to(x.dtype)) @ self.fit.T.to(x.dtype)


class SHSpaceActivation(_GridActivation):
    """A pointwise nonlinearity applied in SH space to features on a grid: ``(..., V)`` -> ``(..., V)``.

    The values on the grid's pixels are fitted by SH of degree <= lmax (least squares), ``activation`` is applied
    to each coefficient and the result is evaluated back on the pixels. Not rotation-equivariant: the control of
    the activation-space comparison.

    Raises
    ------
    ValueError
        If the grid has fewer pixels than K.
    """

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(x @ self.fit.T.to(x.dtype)) @ self.basis.T.to(x.dtype)
