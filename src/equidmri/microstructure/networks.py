"""The two FA regressors of Goodwin-Allcock et al. (CDMRI 2022): the FCN baseline and a spherical CNN.

- :class:`FCN`: 6 b0-normalised signals -> hidden layers [100, 100, 10] with ReLU -> FA (the paper's
  baseline, after Aliotta et al., Magn. Reson. Med. 81(2), 2019). Its inputs are tied to the order and
  orientation of the 6 gradient directions it was trained with.
- :class:`SphericalCNN`: the ADC profile of the fitted tensor on the HEALPix hemisphere V+ ``(B, V+)`` ->
  Chebyshev graph convolutions on V+ (``SpatioSphericalConv`` with a 1-voxel kernel: the ESD layer,
  Defferrard et al. NeurIPS 2016 eq. 4 on the HEALPix graph of Perraudin et al. 2019) with ReLU, which are
  rotation-equivariant up to the HEALPix graph's discretisation -> mean over the vertices (a rotation
  invariant) -> two linear layers -> FA. The paper used Cobb et al.'s hybrid spherical CNN (ICLR 2021);
  ours is a different equivariant network with the same role, and its invariance is measured (tests,
  ``equidmri bench fa``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from equidmri.nn.layers import SphereGrid, SpatioSphericalConv
from equidmri.sphere.sh import mean_weights

FCN_HIDDEN = (100, 100, 10)  # Goodwin-Allcock et al., CDMRI 2022, §2.3
SCNN_NSIDE = 8  # V+ = 384 directions (spacing 6.1-7.5°); at nside 4 the invariance error was ~4x larger (measured)
SCNN_CHANNELS = (16, 16)
# Chebyshev polynomials per filter: 2 (a + b L, one-hop filters). Measured after 10 epochs on 2000 simulated
# voxels (nside 8, channels (16, 16)): cheb_order 5 gave a 2.6x slower training and a 10x larger rotation
# invariance error (max |ΔFA| 1.1e-2 vs 1.1e-3) for a lower RMSE (0.100 vs 0.131).
SCNN_CHEB_ORDER = 2
SCNN_HIDDEN = 16
SCNN_MEAN_LMAX = 8  # the readout's sphere mean is exact up to this SH degree (HEALPix centres: not even l = 2)
SCNN_METHOD = "sparse-recursion"  # fastest path for voxel-wise batches of small V (measured, 2 CPU cores)


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
    """

    def __init__(self, nside: int = SCNN_NSIDE, channels: tuple[int, ...] = SCNN_CHANNELS,
                 cheb_order: int = SCNN_CHEB_ORDER, hidden: int = SCNN_HIDDEN) -> None:
        super().__init__()
        self.grid = SphereGrid(nside, hemisphere=True)
        widths = (1, *channels)
        self.convs = nn.ModuleList(
            SpatioSphericalConv(width_in, width_out, self.grid, cheb_order=cheb_order, kernel_size=1,
                                method=SCNN_METHOD)
            for width_in, width_out in zip(widths, widths[1:])
        )
        weights = mean_weights(self.grid.vertices, SCNN_MEAN_LMAX)
        self.register_buffer("mean_weights", torch.tensor(weights, dtype=torch.float32), persistent=False)
        self.activation = nn.ReLU()
        self.readout = nn.Sequential(nn.Linear(widths[-1], hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, profile: Tensor) -> Tensor:
        if profile.ndim != 2 or profile.shape[1] != self.grid.n_vertices:
            raise ValueError(f"expected (B, {self.grid.n_vertices}) ADC profiles, got {tuple(profile.shape)}")
        features = profile[:, :, None, None, None, None]  # (B, V+, X=1, Y=1, Z=1, C=1)
        for conv in self.convs:
            features = self.activation(conv(features))
        # (B, C): mean over the sphere, exact for even SH degrees <= SCNN_MEAN_LMAX (a rotation invariant)
        invariant = torch.einsum("bv...,v->b...", features, self.mean_weights.to(features.dtype)).flatten(1)
        return self.readout(invariant).squeeze(-1)
