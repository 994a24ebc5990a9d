"""The encoder-decoder shared by every registered network (SHD paper §3.3; baselines of App. C.3-C.4).

Each level has two conv-BatchNorm-ReLU blocks; between levels a pooling (spherical for the spherical
networks, none for the SH networks), and the decoder concatenates the skip connection of its level.
Feature maps are ``(B, V, X, Y, Z, C)``, vertex-major and channels last (see ``SpatioSphericalConv``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.profiler import record_function

from equidmri.nn.layers.pooling import Unpooled
from equidmri.nn.layers.support import MaskSupport
from equidmri.runtime import on_threads

PROFILE_PREFIX = "equidmri: "  # names the masked pass's stages in a torch.profiler trace (bench throughput)
# Voxels per pass of a voxel-wise network on a CPU: the pass's maps then stay in the cache. The pretrained SHD
# network on 32768 voxels, 2 cores, OpenMP's passive wait (development measurement): in one pass 6 700 voxels/s;
# in passes of 2048 and 1024 voxels in turn 9 400 and 10 200; in passes of 2048, 1024, 512 and 256 side by side
# on the 2 threads 14 800, 17 200, 17 900 and 14 600
VOXEL_CHUNK = 512


def stage(name: str) -> record_function:
    """Profiler range ``PROFILE_PREFIX + name`` (near-free when no profiler is active)."""
    return record_function(PROFILE_PREFIX + name)


def broadcast_kernel_sizes(kernel_sizes: int | tuple[int, ...], widths: tuple[int, ...]) -> tuple[int, ...]:
    """``kernel_sizes`` per level; one int applies to every level.

    Raises
    ------
    ValueError
        If ``widths`` is empty or the lengths differ.
    """
    widths = tuple(widths)
    kernel_sizes = (kernel_sizes,) * len(widths) if isinstance(kernel_sizes, int) else tuple(kernel_sizes)
    if len(widths) != len(kernel_sizes) or not widths:
        raise ValueError(f"widths {widths} and kernel_sizes {kernel_sizes} must be non-empty and of equal length")
    return kernel_sizes


class UNetBackbone(nn.Module):
    """Encoders, decoders, pools and unpools of a U-Net, built from per-level factories.

    Parameters
    ----------
    in_channels : int
        Channels of the feature map entering the first encoder.
    widths : tuple of int
        Channels per level.
    kernel_sizes : tuple of int
        Spatial kernel edge per level (for the receptive radius).
    block : callable ``(c_in, c_out, level) -> nn.Module``
        A conv-BatchNorm-ReLU block at ``level``.
    pool, unpool : callable ``level -> nn.Module``, optional
        Down- and up-sampling between ``level`` and ``level + 1`` (default: identity).
    """

    def __init__(
        self,
        in_channels: int,
        widths: tuple[int, ...],
        kernel_sizes: tuple[int, ...],
        block: Callable[[int, int, int], nn.Module],
        pool: Callable[[int], nn.Module] | None = None,
        unpool: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.widths, self.kernel_sizes = tuple(widths), tuple(kernel_sizes)
        levels = range(len(widths))
        channels = (in_channels,) + self.widths
        self.encoders = nn.ModuleList(
            nn.Sequential(block(channels[i], widths[i], i), block(widths[i], widths[i], i)) for i in levels
        )
        self.decoders = nn.ModuleList(
            nn.Sequential(block(widths[i + 1] + widths[i], widths[i], i), block(widths[i], widths[i], i))
            for i in levels[:-1]
        )
        self.pools = nn.ModuleList((pool or (lambda _: nn.Identity()))(i) for i in levels[:-1])
        self.unpools = nn.ModuleList((unpool or (lambda _: nn.Identity()))(i) for i in levels[:-1])

    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, in_channels, X, Y, Z, V)`` on the subclass's ``grid``."""
        if x.ndim != 6 or x.shape[1] != self.in_channels or x.shape[-1] != self.grid.n_vertices:
            raise ValueError(f"expected (B, {self.in_channels}, X, Y, Z, {self.grid.n_vertices}), got {tuple(x.shape)}")

    @property
    def features_radius(self) -> int:
        """Voxels of context on each side that one voxel of :meth:`features` depends on."""
        radii = [k // 2 for k in self.kernel_sizes]
        return 4 * sum(radii[:-1]) + 2 * radii[-1]

    @property
    def receptive_radius(self) -> int:
        """Voxels of context on each side that one output voxel depends on (the tiling halo)."""
        return self.features_radius

    def features(self, x: Tensor) -> Tensor:
        """``(B, V, X, Y, Z, in_channels)`` -> ``(B, V, X, Y, Z, widths[0])`` through encoders and decoders."""
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x)
            if level < len(self.pools):
                skips.append(x)
                x = self.pools[level](x)
        for level in reversed(range(len(self.decoders))):
            x = self.decoders[level](torch.cat([self.unpools[level](x), skips[level]], dim=-1))
        return x

    def features_on(self, x: Tensor, support: MaskSupport) -> Tensor:
        """Masked :meth:`features`: ``x`` compact on ``mask (+) features_radius`` -> compact on the mask.

        Every block runs on the voxels that the outputs on the mask depend on (``support.radius`` must be
        ``features_radius``); see :mod:`equidmri.nn.layers.support`.
        """
        k, skips = support.radius, []
        for level, encoder in enumerate(self.encoders):
            with stage(f"level {level} encoder"):
                for block in encoder:
                    x, k = block.forward_on(x, support, k)
                if level < len(self.pools):
                    skips.append((x, k))
                    x = self.pools[level](x)
        for level in reversed(range(len(self.decoders))):
            with stage(f"level {level} decoder"):
                skip, k_skip = skips[level]
                # read as their concatenation; the unpooling left to the block (a spectral one skips it)
                x = (Unpooled(x, self.unpools[level]), support.restrict(skip, k_skip, k))
                for block in self.decoders[level]:
                    x, k = block.forward_on(x, support, k)
        return x

    def forward_masked(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """The network's outputs on the voxels of ``mask`` only, computed on the voxels they depend on.

        Equals ``forward(x)`` at the mask's voxels; the cost scales with the dilated mask, not the volume. A
        voxel-wise network (``receptive_radius`` 0) on a CPU runs on :data:`VOXEL_CHUNK` voxels at a time, the
        chunks side by side on torch's threads (:func:`equidmri.runtime.on_threads`).

        Parameters
        ----------
        x : Tensor, shape ``(B, C_in, X, Y, Z, V)``
        mask : Tensor, shape ``(X, Y, Z)`` bool

        Returns
        -------
        fodf : Tensor, shape ``(B, N, V)``
            WM fODF at the N voxels of ``mask`` in ascending flat (C-order) index.
        iso : Tensor, shape ``(B, N, n_iso)``
        """
        if self.receptive_radius or x.device.type != "cpu" or int(mask.sum()) <= VOXEL_CHUNK:
            return self._forward_support(x, mask)
        voxels = x.flatten(2, 4)[:, :, mask.flatten()]  # (B, C, N, V)
        chunk_mask = torch.ones(VOXEL_CHUNK, 1, 1, dtype=torch.bool)

        def chunk(start: int) -> tuple[Tensor, Tensor]:
            part = voxels[:, :, start : start + VOXEL_CHUNK, None, None]  # (B, C, n, 1, 1, V)
            return self._forward_support(part, chunk_mask[: part.shape[2]])

        parts = on_threads(chunk, range(0, voxels.shape[2], VOXEL_CHUNK))
        return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)

    def _forward_support(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`forward_masked` in one pass."""
        with stage("mask support"):
            support = MaskSupport(mask, self.features_radius)
        with stage("input lift"):
            if self.receptive_radius == self.features_radius:  # voxel-wise lift: on the support's voxels only
                voxels = x.flatten(2, 4).index_select(2, support.index[support.radius])
                h = self.lift(voxels[:, :, :, None, None])
            else:
                h = support.compact(self.lift(x), support.radius)
        h = self.features_on(h, support)
        with stage("head and readout"):
            fodf, iso = self.readout(self.head(h))
        return fodf.flatten(1, 3), iso.flatten(1, 3)
