"""The E(3)-SH layer: SH coefficients of each voxel's spherical signal as channels of an isotropic 3D convolution.

The baseline operator of the equivariance experiment (SHD paper App. A.2, "E(3)-SH"): it commutes with voxel
grid rotations only when the SH coefficients are rotated too, which an isotropic kernel on coefficient channels
does not do, so it fails voxel rotations by design.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from equidmri.nn.layers.spatial import IsotropicConv3d
from equidmri.sphere.sh import sh_fit_matrix, sh_matrix

__all__ = ["SHSpatialConv"]


class SHSpatialConv(nn.Module):
    """``(B, V, X, Y, Z, C)`` -> ``(B, V, X, Y, Z, C')``: SH projection, isotropic 3D convolution, evaluation.

    Parameters
    ----------
    in_channels, out_channels : int
    vertices : ndarray, shape ``(V, 3)``
        Unit vectors of the sphere samples.
    lmax : int
        Even SH degree of the projection; K = (lmax+1)(lmax+2)/2 coefficients per channel.
    sh_basis : str
        ``"descoteaux07"`` or ``"tournier07"`` (dipy, ``legacy=False``).
    kernel_size : int
        Odd spatial kernel edge, voxels.

    References
    ----------
    Elaldi, Gerig & Dey, NeurIPS 2024, App. A.2 (the E(3)-SH operator of Fig. 8).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        vertices: np.ndarray,
        lmax: int,
        sh_basis: str = "descoteaux07",
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.register_buffer("fit", torch.tensor(sh_fit_matrix(vertices, lmax, sh_basis)), persistent=False)
        self.register_buffer("basis", torch.tensor(sh_matrix(vertices, lmax, sh_basis)), persistent=False)
        self.lmax, self.sh_basis = lmax, sh_basis
        self.n_coeffs, self.out_channels = self.fit.shape[0], out_channels
        self.conv = IsotropicConv3d(in_channels * self.n_coeffs, out_channels * self.n_coeffs, kernel_size=kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        coeffs = (x.movedim(1, -1) @ self.fit.T.to(x.dtype)).flatten(4)[:, None]  # (B, 1, X, Y, Z, C K)
        out = self.conv(coeffs)[:, 0].unflatten(-1, (self.out_channels, self.n_coeffs))
        return (out @ self.basis.T.to(x.dtype)).movedim(-1, 1)
