"""SH-coefficient baselines: 3D CNN ("cnn", E(3)-SH) and voxel-wise MLP ("mlp") (SHD paper App. C.4).

The signal on the grid is projected onto SH coefficients with a fixed least-squares matrix; every
coefficient of every input channel becomes one scalar channel of an ordinary U-Net of isotropic 3D
convolutions (no spherical pooling: the levels only change the width); the head gives the WM fODF's SH
coefficients, evaluated back on the grid with the fixed SH matrix (Softplus, >= 0), and the isotropic
fractions. Isotropic kernels keep the network E(3)-equivariant; treating the coefficients as independent
channels breaks SO(3) equivariance, which is what these baselines stand for. ``kernel_sizes=1`` makes every
layer voxel-wise: the MLP.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from equidmri.nn.blocks.conv_block import ConvBlock
from equidmri.nn.defaults import DEFAULT_KERNEL_SIZES, DEFAULT_WIDTHS
from equidmri.nn.layers.grid import SphereGrid
from equidmri.nn.layers.spatial import IsotropicConv3d
from equidmri.nn.models.backbone import UNetBackbone, broadcast_kernel_sizes
from equidmri.nn.models.unet import HEAD_INIT_SCALE, INITIAL_FODF, inverse_softplus
from equidmri.sphere.sh import sh_fit_matrix, sh_matrix

SH_LMAX = 8  # SH degree of the input projection and of the output fODF
SH_BASIS = "descoteaux07"


class SHUNet(UNetBackbone):
    """U-Net of isotropic 3D convolutions on SH coefficients, ``(B, C_in, X, Y, Z, V)`` in and out like ``SHDUNet``.

    Parameters
    ----------
    in_channels : int
        Input channels (b0 + one per shell).
    n_iso : int
        Number of isotropic tissues.
    nside : int
        HEALPix resolution of the input and output grid.
    widths : sequence of int
        Channels per level.
    kernel_sizes : int or sequence of int
        Spatial kernel edge per level (1 or 3); ``1`` everywhere is the voxel-wise MLP.
    hemisphere : bool
        Grid V+ with the even-degree basis (antipodally symmetric signals, dMRI) or the full sphere with
        every degree (``(lmax + 1)^2`` coefficients).
    lmax : int
        Even SH degree of the projection and of the output.

    Raises
    ------
    ValueError
        If widths and kernel sizes differ in length or the grid cannot determine the coefficients.
    """

    def __init__(
        self,
        in_channels: int,
        n_iso: int = 0,
        *,
        nside: int = 8,
        widths: tuple[int, ...] = DEFAULT_WIDTHS,
        kernel_sizes: int | tuple[int, ...] = DEFAULT_KERNEL_SIZES,
        hemisphere: bool = True,
        lmax: int = SH_LMAX,
    ) -> None:
        widths = tuple(widths)
        kernel_sizes = broadcast_kernel_sizes(kernel_sizes, widths)
        grid = SphereGrid(nside, hemisphere)
        fit = sh_fit_matrix(grid.vertices, lmax, SH_BASIS, full_basis=not hemisphere)  # (K, V)
        n_coeffs = fit.shape[0]

        def block(c_in: int, c_out: int, level: int) -> ConvBlock:
            return ConvBlock(c_in, c_out, None, kernel_size=kernel_sizes[level])

        super().__init__(in_channels * n_coeffs, widths, kernel_sizes, block)
        self.in_channels, self.n_iso, self.nside, self.grid = in_channels, n_iso, nside, grid
        self.hemisphere, self.lmax, self.n_coeffs = hemisphere, lmax, n_coeffs
        # geometry stays float64 and is cast to the input's dtype in forward (as in SpatioSphericalConv)
        self.register_buffer("sh_fit", torch.tensor(fit), persistent=False)
        self.register_buffer(
            "sh_basis", torch.tensor(sh_matrix(grid.vertices, lmax, SH_BASIS, not hemisphere)), persistent=False
        )
        self.head = IsotropicConv3d(widths[0], n_coeffs + n_iso, kernel_size=1)
        with torch.no_grad():
            self.head.weight.mul_(HEAD_INIT_SCALE)
            start = inverse_softplus(INITIAL_FODF)
            self.head.bias.fill_(start)
            self.head.bias[1:n_coeffs] = 0.0
            self.head.bias[0] = start * math.sqrt(4 * math.pi)  # Y_00 = 1 / sqrt(4 pi)

    def lift(self, x: Tensor) -> Tensor:
        """Map ``(B, C_in, X, Y, Z, V)`` to the SH coefficients ``(B, 1, X, Y, Z, C_in * K)`` of :meth:`features`."""
        self.check_input(x)
        coeffs = x @ self.sh_fit.to(x.dtype).T  # (B, C, X, Y, Z, K)
        return coeffs.permute(0, 2, 3, 4, 1, 5).flatten(4)[:, None]

    def embed(self, x: Tensor) -> Tensor:
        """Map ``(B, C_in, X, Y, Z, V)`` to the last feature map ``(B, 1, X, Y, Z, widths[0])`` before the head."""
        return self.features(self.lift(x))

    def readout(self, out: Tensor) -> tuple[Tensor, Tensor]:
        """Head output ``(B, 1, X, Y, Z, K + n_iso)`` -> fODF ``(B, X, Y, Z, V)``, fractions ``(B, X, Y, Z, n_iso)``."""
        out = out[:, 0]
        fodf = nn.functional.softplus(out[..., : self.n_coeffs] @ self.sh_basis.to(out.dtype).T)
        iso = nn.functional.softplus(out[..., self.n_coeffs :])
        return fodf, iso

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``(B, C_in, X, Y, Z, V)`` to the WM fODF ``(B, X, Y, Z, V)`` and fractions ``(B, X, Y, Z, n_iso)``."""
        return self.readout(self.head(self.embed(x)))

    def extra_repr(self) -> str:
        return (
            f"nside={self.nside}, widths={self.widths}, kernel_sizes={self.kernel_sizes}, lmax={self.lmax}, "
            f"hemisphere={self.hemisphere}, n_iso={self.n_iso}"
        )
