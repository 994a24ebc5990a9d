"""Chebyshev filters of a fixed spherical operator on vertex-major maps ``(B, V, C)`` (the FA S-CNN's layer).

The deconvolution networks filter with the HEALPix graph Laplacian (:mod:`equidmri.nn.layers.spatio_spherical`);
this layer takes any ``(V, V)`` operator with its spectrum in [-1, 1], e.g. the band-limited Laplace–Beltrami
operator of :func:`equidmri.sphere.sh.laplace_beltrami`, whose polynomials are zonal filters that commute
exactly with rotations of band-limited signals.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from equidmri.sphere.graph import matrix_chebyshev

__all__ = ["OperatorChebyshevConv"]


class OperatorChebyshevConv(nn.Module):
    """``(B, V, C_in)`` -> ``(B, V, C_out)``: ``y = Σ_k T_k(A) x W_k + b``, ``A`` a fixed ``(V, V)`` operator.

    Parameters
    ----------
    operator : ndarray, shape ``(V, V)``
        The operator the filters are polynomials of, spectrum in [-1, 1] (float64; cast once to float32).
    in_channels, out_channels, cheb_order : int
        Channel counts and number of Chebyshev polynomials; weights He-initialised over ``C_in * cheb_order``.

    References
    ----------
    Defferrard, Bresson & Vandergheynst, NeurIPS 2016, eq. 4 (Chebyshev filters of an operator).
    """

    def __init__(self, operator: np.ndarray, in_channels: int, out_channels: int, cheb_order: int) -> None:
        super().__init__()
        higher = matrix_chebyshev(operator, cheb_order)[1:]  # T_1 .. T_{K-1}; T_0 = I needs no matmul
        self.register_buffer("polynomials", torch.tensor(higher, dtype=torch.float32), persistent=False)
        self.cheb_order = cheb_order
        fan_in = in_channels * cheb_order
        self.weight = nn.Parameter(torch.randn(cheb_order, in_channels, out_channels) * (2.0 / fan_in) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        higher = torch.einsum("kuv,bvc->bkuc", self.polynomials.to(x.dtype), x)
        filtered = torch.cat([x[:, None], higher], dim=1)
        return torch.einsum("bkuc,kcd->bud", filtered, self.weight) + self.bias
