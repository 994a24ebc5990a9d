"""SHD U-Net: spatio-spherical U-Net over HEALPix levels (Elaldi, Gerig & Dey, NeurIPS 2024, §3.3).

Each level halves nside (8 -> 4 -> 2 -> 1 by default) with two conv-BatchNorm-ReLU blocks; the decoder
concatenates skip connections; a head convolution gives the WM fODF on the grid (Softplus, >= 0) and,
for multi-tissue data, the isotropic tissue fractions (vertex mean, Softplus).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from equidmri.nn.blocks.conv_block import ConvBlock
from equidmri.nn.layers.grid import SphereGrid
from equidmri.nn.layers.pooling import SphericalPool, SphericalUnpool
from equidmri.nn.layers.spatio_spherical import SpatioSphericalConv

DEFAULT_WIDTHS = (8, 16, 32, 64)  # CPU-friendly; the reference code uses REFERENCE_WIDTHS
REFERENCE_WIDTHS = (32, 64, 128, 256)  # SHD reference implementation
DEFAULT_KERNEL_SIZES = (3, 1, 1, 1)  # 3x3x3 isotropic kernels at the finest level, voxel-wise below
INITIAL_FODF = 1.0 / (4.0 * math.pi)  # head bias start: an fODF of unit integral (single-tissue voxel)
HEAD_INIT_SCALE = 0.01  # shrinks the head's He initialisation so training starts near the uniform fODF


class SHDUNet(nn.Module):
    """U-Net of E(3) x SO(3) convolutions on ``(B, C_in, X, Y, Z, V)`` signals.

    Parameters
    ----------
    in_channels : int
        Input channels (b0 channel + one per diffusion-weighted shell).
    n_iso : int
        Number of isotropic tissues (0 single-shell, 2 for GM and CSF).
    nside : int
        HEALPix resolution of the input grid; must allow ``len(widths) - 1`` halvings.
    widths : sequence of int
        Channels per level.
    kernel_sizes : sequence of int
        Spatial kernel edge per level (odd); 1 makes that level voxel-wise.
    cheb_order : int
        Chebyshev polynomials per spherical filter.
    hemisphere : bool
        ``True``: V+ (SHD); ``False``: full sphere (RT-ESD).
    kernel : {"full", "rank1"}
        Spatial kernel parameterisation (see ``SpatioSphericalConv``).
    sigma : float, optional
        Graph kernel width (see ``SpatioSphericalConv``).
    method : str
        Computation path of every convolution (``SpatioSphericalConv``'s ``METHODS``; same outputs).

    Raises
    ------
    ValueError
        If widths and kernel sizes differ in length or nside is too small for the depth.
    """

    def __init__(
        self,
        in_channels: int,
        n_iso: int = 0,
        *,
        nside: int = 8,
        widths: tuple[int, ...] = DEFAULT_WIDTHS,
        kernel_sizes: tuple[int, ...] = DEFAULT_KERNEL_SIZES,
        cheb_order: int = 5,
        hemisphere: bool = True,
        kernel: str = "full",
        sigma: float | None = None,
        method: str = "spectral",
    ) -> None:
        super().__init__()
        widths, kernel_sizes = tuple(widths), tuple(kernel_sizes)
        if len(widths) != len(kernel_sizes) or not widths:
            raise ValueError(f"widths {widths} and kernel_sizes {kernel_sizes} must be non-empty and of equal length")
        if nside < 2 ** (len(widths) - 1):
            raise ValueError(f"nside {nside} cannot be halved {len(widths) - 1} times")
        self.in_channels, self.n_iso, self.nside = in_channels, n_iso, nside
        self.widths, self.kernel_sizes, self.cheb_order, self.hemisphere = widths, kernel_sizes, cheb_order, hemisphere
        grids = [SphereGrid(nside // 2**level, hemisphere) for level in range(len(widths))]
        self.grid = grids[0]

        def block(c_in: int, c_out: int, level: int) -> ConvBlock:
            return ConvBlock(c_in, c_out, grids[level], cheb_order=cheb_order, kernel_size=kernel_sizes[level],
                             kernel=kernel, sigma=sigma, method=method)

        channels = (in_channels,) + widths
        self.encoders = nn.ModuleList(
            nn.Sequential(block(channels[i], widths[i], i), block(widths[i], widths[i], i)) for i in range(len(widths))
        )
        self.decoders = nn.ModuleList(
            nn.Sequential(block(widths[i + 1] + widths[i], widths[i], i), block(widths[i], widths[i], i))
            for i in range(len(widths) - 1)
        )
        self.pools = nn.ModuleList(SphericalPool(grids[i]) for i in range(len(widths) - 1))
        self.unpools = nn.ModuleList(SphericalUnpool(grids[i]) for i in range(len(widths) - 1))
        self.head = SpatioSphericalConv(widths[0], 1 + n_iso, grids[0], cheb_order=cheb_order, kernel_size=1,
                                        sigma=sigma, method=method)
        with torch.no_grad():
            self.head.weight.mul_(HEAD_INIT_SCALE)
            self.head.bias.fill_(math.log(math.expm1(INITIAL_FODF)))

    @property
    def receptive_radius(self) -> int:
        """Voxels of context on each side that one output voxel depends on (the tiling halo)."""
        radii = [k // 2 for k in self.kernel_sizes]
        return 4 * sum(radii[:-1]) + 2 * radii[-1]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``(B, C_in, X, Y, Z, V)`` to the WM fODF ``(B, X, Y, Z, V)`` and fractions ``(B, X, Y, Z, n_iso)``."""
        if x.ndim != 6 or x.shape[1] != self.in_channels or x.shape[-1] != self.grid.n_vertices:
            raise ValueError(
                f"expected (B, {self.in_channels}, X, Y, Z, {self.grid.n_vertices}), got {tuple(x.shape)}"
            )
        x = x.permute(0, 5, 2, 3, 4, 1).contiguous()  # vertex-major, channels last (see SpatioSphericalConv)
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x)
            if level < len(self.pools):
                skips.append(x)
                x = self.pools[level](x)
        for level in reversed(range(len(self.decoders))):
            x = self.decoders[level](torch.cat([self.unpools[level](x), skips[level]], dim=-1))
        out = self.head(x)  # (B, V, X, Y, Z, 1 + n_iso)
        fodf = nn.functional.softplus(out[..., 0]).permute(0, 2, 3, 4, 1)
        iso = nn.functional.softplus(out[..., 1:].mean(dim=1))
        return fodf, iso

    def extra_repr(self) -> str:
        return (f"nside={self.nside}, widths={self.widths}, kernel_sizes={self.kernel_sizes}, "
                f"cheb_order={self.cheb_order}, hemisphere={self.hemisphere}, n_iso={self.n_iso}")
