"""Spherical U-Nets over HEALPix levels: SHD, RT-ESD, ESD and Concat-ESD (Elaldi, Gerig & Dey, NeurIPS 2024).

Each level halves nside (8 -> 4 -> 2 -> 1 by default) with two conv-BatchNorm-ReLU blocks; the decoder
concatenates skip connections; a head convolution gives the WM fODF on the grid (Softplus, >= 0) and,
for multi-tissue data, the isotropic tissue fractions (vertex mean, Softplus). The same class gives

- SHD (hemisphere V+) and RT-ESD (full sphere): E(3) x SO(3) convolutions, 3x3x3 kernels at level 0 (§3.3);
- ESD: ``kernel_sizes=1``, voxel-wise SO(3) convolutions (Elaldi et al., IPMI 2021);
- Concat-ESD: ``kernel_sizes=1, concat_neighbours=True``, the 3x3x3 neighbourhood as input channels (App. C.4).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from equidmri.nn.blocks.conv_block import ConvBlock
from equidmri.nn.defaults import DEFAULT_KERNEL_SIZES, DEFAULT_WIDTHS, REFERENCE_WIDTHS
from equidmri.nn.layers.eigenbasis import orbit_vertex_order
from equidmri.nn.layers.grid import SphereGrid
from equidmri.nn.layers.pooling import SphericalPool, SphericalUnpool
from equidmri.nn.layers.spatial import neighbours_as_channels
from equidmri.nn.layers.spatio_spherical import SpatioSphericalConv
from equidmri.nn.models.backbone import UNetBackbone, broadcast_kernel_sizes

__all__ = ["DEFAULT_KERNEL_SIZES", "DEFAULT_WIDTHS", "REFERENCE_WIDTHS", "SHDUNet", "inverse_softplus"]

INITIAL_FODF = 1.0 / (4.0 * math.pi)  # head bias start: an fODF of unit integral (single-tissue voxel)
HEAD_INIT_SCALE = 0.01  # shrinks the head's He initialisation so training starts near the uniform fODF
NEIGHBOURHOOD = 27  # 3x3x3 voxels stacked as channels by Concat-ESD


def inverse_softplus(y: float) -> float:
    """``x`` with ``softplus(x) = y`` (y > 0)."""
    return math.log(math.expm1(y))


class SHDUNet(UNetBackbone):
    """U-Net of spatio-spherical convolutions on ``(B, C_in, X, Y, Z, V)`` signals.

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
    kernel_sizes : int or sequence of int
        Spatial kernel edge per level (1 or 3; 1 makes that level voxel-wise); one int for every level.
    cheb_order : int
        Chebyshev polynomials per spherical filter.
    hemisphere : bool
        ``True``: V+ (SHD); ``False``: full sphere (RT-ESD).
    kernel : {"full", "rank1"}
        Spatial kernel parameterisation (see ``SpatioSphericalConv``).
    sigma : float, optional
        Graph kernel width (default ``equidmri.sphere.graph.default_sigma``).
    concat_neighbours : bool
        Stack each voxel's 3x3x3 neighbourhood on the input channels (Concat-ESD; not E(3)-equivariant).
    method : str
        Computation path of every convolution (``SpatioSphericalConv``'s ``METHODS``; same outputs).
    spatial : {"stencil", "conv3d"}
        How every convolution applies its isotropic kernel (``SpatioSphericalConv``; same outputs).

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
        kernel_sizes: int | tuple[int, ...] = DEFAULT_KERNEL_SIZES,
        cheb_order: int = 5,
        hemisphere: bool = True,
        kernel: str = "full",
        sigma: float | None = None,
        concat_neighbours: bool = False,
        method: str = "spectral",
        spatial: str = "stencil",
    ) -> None:
        widths = tuple(widths)
        kernel_sizes = broadcast_kernel_sizes(kernel_sizes, widths)
        if nside < 2 ** (len(widths) - 1):
            raise ValueError(f"nside {nside} cannot be halved {len(widths) - 1} times")
        grids = [SphereGrid(nside // 2**level, hemisphere) for level in range(len(widths))]
        # the finest level's maps keep their vertices in the eigenbasis's orbit order (its transforms then need no
        # gather or scatter): lift reads the input in that order, readout gives the fODF back in the grid's
        order = orbit_vertex_order(grids[0], sigma) if method == "spectral" else None

        def block(c_in: int, c_out: int, level: int) -> ConvBlock:
            return ConvBlock(
                c_in,
                c_out,
                grids[level],
                cheb_order=cheb_order,
                kernel_size=kernel_sizes[level],
                kernel=kernel,
                sigma=sigma,
                method=method,
                spatial=spatial,
                orbit_order=level == 0 and order is not None,
            )

        def pool(level: int) -> SphericalPool:
            return SphericalPool(grids[level], order if level == 0 else None)

        def unpool(level: int) -> SphericalUnpool:
            return SphericalUnpool(grids[level], order if level == 0 else None)

        first = in_channels * (NEIGHBOURHOOD if concat_neighbours else 1)
        super().__init__(first, widths, kernel_sizes, block, pool, unpool)
        self.register_buffer("vertex_order", order, persistent=False)  # None: the grid's order throughout
        self.register_buffer("vertex_position", None if order is None else torch.argsort(order), persistent=False)
        self.in_channels, self.n_iso, self.nside, self.grid = in_channels, n_iso, nside, grids[0]
        self.cheb_order, self.hemisphere, self.concat_neighbours = cheb_order, hemisphere, concat_neighbours
        self.head = SpatioSphericalConv(
            widths[0],
            1 + n_iso,
            grids[0],
            cheb_order=cheb_order,
            kernel_size=1,
            sigma=sigma,
            method=method,
            spatial=spatial,
            orbit_order=order is not None,
        )
        with torch.no_grad():
            self.head.weight.mul_(HEAD_INIT_SCALE)
            self.head.bias.fill_(inverse_softplus(INITIAL_FODF))

    @property
    def receptive_radius(self) -> int:
        """Voxels of context on each side that one output voxel depends on (the tiling halo)."""
        return self.features_radius + int(self.concat_neighbours)

    def lift(self, x: Tensor) -> Tensor:
        """Map ``(B, C_in, X, Y, Z, V)`` to the first feature map ``(B, V, X, Y, Z, C)`` of :meth:`features` (vertices
        in :attr:`vertex_order`, the finest grid's orbit order, when it is set)."""
        self.check_input(x)
        x = x.permute(0, 5, 2, 3, 4, 1)  # vertex-major, channels last (see SpatioSphericalConv)
        x = x.contiguous() if self.vertex_order is None else x.index_select(1, self.vertex_order)
        return neighbours_as_channels(x) if self.concat_neighbours else x

    def embed(self, x: Tensor) -> Tensor:
        """Map ``(B, C_in, X, Y, Z, V)`` to the last feature map ``(B, V, X, Y, Z, widths[0])`` before the head
        (vertices in :attr:`vertex_order` when it is set)."""
        return self.features(self.lift(x))

    def readout(self, out: Tensor) -> tuple[Tensor, Tensor]:
        """Head output ``(B, V, X, Y, Z, 1 + n_iso)`` -> fODF ``(B, X, Y, Z, V)`` (in the grid's vertex order),
        fractions ``(B, X, Y, Z, n_iso)``."""
        fodf = nn.functional.softplus(out[..., 0])
        if self.vertex_position is not None:  # back to the grid's order
            fodf = fodf.index_select(1, self.vertex_position)
        fodf = fodf.permute(0, 2, 3, 4, 1)
        iso = nn.functional.softplus(out[..., 1:].mean(dim=1))
        return fodf, iso

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``(B, C_in, X, Y, Z, V)`` to the WM fODF ``(B, X, Y, Z, V)`` and fractions ``(B, X, Y, Z, n_iso)``."""
        return self.readout(self.head(self.embed(x)))

    def extra_repr(self) -> str:
        return (
            f"nside={self.nside}, widths={self.widths}, kernel_sizes={self.kernel_sizes}, "
            f"cheb_order={self.cheb_order}, hemisphere={self.hemisphere}, n_iso={self.n_iso}, "
            f"concat_neighbours={self.concat_neighbours}"
        )
