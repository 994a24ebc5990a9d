"""The two FA regressors of Goodwin-Allcock et al. (CDMRI 2022): the FCN baseline and a spherical CNN.

- :class:`FCN`: 6 b0-normalised signals -> hidden layers [100, 100, 10] with ReLU -> FA (the paper's
  baseline, after Aliotta et al., Magn. Reson. Med. 81(2), 2019). Its inputs are tied to the order and
  orientation of the 6 gradient directions it was trained with.
- :class:`SphericalCNN`: the ADC profile of the fitted tensor on the HEALPix hemisphere V+ ``(B, V+)`` ->
  spherical convolutions with GELU -> mean over the sphere (a rotation invariant) -> two linear layers -> FA.
  The convolutions are Chebyshev filters (Defferrard et al. NeurIPS 2016 eq. 4) of the sphere's
  Laplace-Beltrami operator on band-limited samples (:func:`equidmri.sphere.sh.laplace_beltrami`), i.e.
  isotropic (zonal) filters that commute exactly with rotations up to SH degree ``SCNN_LMAX``, instead of the
  HEALPix graph Laplacian of the deconvolution networks, whose discretisation error, with ReLU's aliasing, broke the
  issue's invariance bound (measured below). The paper used Cobb et al.'s hybrid spherical CNN (ICLR 2021); ours is a
  different equivariant network with the same role, and its invariance is measured (tests,
  ``equidmri bench fa``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from equidmri.nn.layers import OperatorChebyshevConv, SphereGrid
from equidmri.sphere.sh import laplace_beltrami, mean_weights

FCN_HIDDEN = (100, 100, 10)  # Goodwin-Allcock et al., CDMRI 2022, §2.3
SCNN_NSIDE = 8  # V+ = 384 directions (spacing 6.1-7.5°)
SCNN_CHANNELS = (16, 16)
SCNN_CHEB_ORDER = 2  # Chebyshev polynomials per filter: a + b A
SCNN_HIDDEN = 16
SCNN_LMAX = 8  # band limit of the Laplace-Beltrami operator and of the readout's exact sphere mean
# Measured (max |ΔFA| under random rotations of 1000 noise-free test tensors, after 40 epochs on 2000 simulated
# voxels, nside 8, channels (16, 16), 2 polynomials): HEALPix graph Laplacian + ReLU 1.2e-3 (the previous
# S-CNN), Laplace-Beltrami + ReLU 5.1e-4, Laplace-Beltrami + GELU 1.2e-4, + Softplus 5.5e-5 (training MSE
# 0.0094 / 0.0092 / 0.0106): ReLU's kink makes high degrees the grid aliases; GELU is smooth and as accurate.
SCNN_ACTIVATION = nn.GELU


class FCN(nn.Module):
    """``(B, 6)`` b0-normalised signals -> ``(B,)`` FA; hidden widths ``hidden`` with ReLU."""

    def __init__(self, n_inputs: int = 6, hidden: tuple[int, ...] = FCN_HIDDEN) -> None:
        super().__init__()
        widths = (n_inputs, *hidden)
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths, widths[1:]):
            layers += [nn.Linear(width_in, width_out), nn.ReLU()]
        self.layers = nn.Sequential(*layers, nn.Linear(widths[-1], 1))

    def forward(self, signals: Tensor) -> Tensor:
        return self.layers(signals).squeeze(-1)


class SphericalCNN(nn.Module):
    """``(B, V+)`` ADC profile (µm²/ms) at ``nside`` -> ``(B,)`` FA, invariant to rotations of the profile.

    Parameters
    ----------
    nside : int
        HEALPix resolution of the input (V+ = 6 nside²).
    channels : tuple of int
        Output channels of the successive spherical convolutions.
    cheb_order : int
        Chebyshev polynomials per spherical filter.
    hidden : int
        Width of the hidden linear layer of the invariant readout.
    lmax : int
        Band limit (even SH degree) of the Laplace-Beltrami operator and of the exact sphere mean.

    Raises
    ------
    ValueError
        If V+ is too small for ``lmax`` (see :func:`equidmri.sphere.sh.laplace_beltrami`).
    """

    def __init__(
        self,
        nside: int = SCNN_NSIDE,
        channels: tuple[int, ...] = SCNN_CHANNELS,
        cheb_order: int = SCNN_CHEB_ORDER,
        hidden: int = SCNN_HIDDEN,
        lmax: int = SCNN_LMAX,
    ) -> None:
        super().__init__()
        self.grid = SphereGrid(nside, hemisphere=True)
        operator = laplace_beltrami(self.grid.vertices, lmax)
        widths = (1, *channels)
        self.convs = nn.ModuleList(
            OperatorChebyshevConv(operator, width_in, width_out, cheb_order)
            for width_in, width_out in zip(widths, widths[1:])
        )
        weights = mean_weights(self.grid.vertices, lmax)
        self.register_buffer("mean_weights", torch.tensor(weights, dtype=torch.float32), persistent=False)
        self.activation = SCNN_ACTIVATION()
        self.readout = nn.Sequential(nn.Linear(widths[-1], hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, profile: Tensor) -> Tensor:
        if profile.ndim != 2 or profile.shape[1] != self.grid.n_vertices:
            raise ValueError(f"expected (B, {self.grid.n_vertices}) ADC profiles, got {tuple(profile.shape)}")
        features = profile[:, :, None]  # (B, V+, C=1)
        for conv in self.convs:
            features = self.activation(conv(features))
        # (B, C): mean over the sphere, exact for even SH degrees <= lmax (a rotation invariant)
        invariant = torch.einsum("bvc,v->bc", features, self.mean_weights.to(features.dtype))
        return self.readout(invariant).squeeze(-1)
