"""Masked execution: feature maps kept only on the voxels an output inside a mask depends on.

A fully convolutional network whose spatial kernels are 3x3x3 needs, for outputs on a mask M, the
features after the j-th spatial convolution counted from the output only on ``M (+) k``, the mask
dilated by k = j voxels (Chebyshev distance: the 3x3x3 cube). Voxel-wise steps (the spherical filters,
channel mixing, pooling, activations) then run on those voxels alone; a 3x3x3 convolution reads its input on
``M (+) k`` and writes its output on ``M (+) (k - 1)``. Computing everything on these sets and treating
the voxels outside as zero gives the network's outputs on M exactly: a wrong value can only arise on the
outer shell of a set, which the next convolution no longer reads.

Compact maps have the layout ``(B, V, N_k, 1, 1, C)``: the ``N_k`` voxels of ``M (+) k`` in ascending flat
(C-order) index on the X axis, so that voxel-wise layers written for ``(B, V, X, Y, Z, C)`` run on them
unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from equidmri.nn.layers.pooling import Unpooled
from equidmri.nn.layers.stencil import class_sums, neighbour_sum


def channel_parts(x: Tensor | Sequence[Tensor | Unpooled]) -> list[Tensor]:
    """A feature map given whole or as the parts of its concatenation along the channels -> the parts (an
    :class:`~equidmri.nn.layers.pooling.Unpooled` part unpooled)."""
    if isinstance(x, Tensor):
        return [x]
    return [part.materialise() if isinstance(part, Unpooled) else part for part in x]


def concatenated(x: Tensor | Sequence[Tensor | Unpooled]) -> Tensor:
    """A feature map given whole or as the parts of its concatenation along the channels -> the whole map."""
    return x if isinstance(x, Tensor) else torch.cat(channel_parts(x), dim=-1)


# elements of one dense class map per chunk of the vertex axis in `MaskSupport.convolve` (2 M float32 = 8 MiB): the
# class maps of a chunk stay small and are reused by every chunk, while the chunks stay few enough that their
# per-chunk indexing and Python overhead is small next to the arithmetic
SPREAD_CHUNK_ELEMENTS = 2**21


class MaskSupport:
    """The voxels of a mask dilated by 0, 1, ..., ``radius`` voxels, and the maps between their layouts.

    Parameters
    ----------
    mask : Tensor, shape ``(X, Y, Z)`` bool
        Voxels where outputs are wanted; the dilations stop at the volume's border.
    radius : int
        Largest dilation (the network's receptive radius).

    Raises
    ------
    ValueError
        If ``mask`` is not 3D or ``radius`` is negative.
    """

    def __init__(self, mask: Tensor, radius: int) -> None:
        if mask.ndim != 3:
            raise ValueError(f"mask must be 3D (X, Y, Z), got shape {tuple(mask.shape)}")
        if radius < 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        self.shape = tuple(mask.shape)
        dilated = mask.to(torch.float32)[None, None]
        self.index = []  # index[k]: flat voxel indices of mask (+) k, ascending
        for k in range(radius + 1):
            if k:
                dilated = torch.nn.functional.max_pool3d(dilated, 3, stride=1, padding=1)
            self.index.append(dilated.flatten().nonzero().flatten().to(mask.device))
        self.radius = radius

    def size(self, k: int) -> int:
        """Number of voxels of ``mask (+) k``."""
        return int(self.index[k].numel())

    def compact(self, x: Tensor, k: int) -> Tensor:
        """``(B, V, X, Y, Z, C)`` -> ``(B, V, N_k, 1, 1, C)``: the values on ``mask (+) k``."""
        b, v = x.shape[:2]
        return x.reshape(b, v, -1, x.shape[-1]).index_select(2, self.index[k]).reshape(b, v, -1, 1, 1, x.shape[-1])

    def dense(self, x: Tensor, k: int) -> Tensor:
        """``(B, V, N_k, 1, 1, C)`` -> ``(B, V, X, Y, Z, C)``, zero outside ``mask (+) k``."""
        b, v, c = x.shape[0], x.shape[1], x.shape[-1]
        out = x.new_zeros(b, v, self.shape[0] * self.shape[1] * self.shape[2], c)
        out.index_copy_(2, self.index[k], x.reshape(b, v, -1, c))
        return out.reshape(b, v, *self.shape, c)

    def restrict(self, x: Tensor, k_from: int, k_to: int) -> Tensor:
        """Compact map on ``mask (+) k_from`` -> its values on the subset ``mask (+) k_to`` (``k_to <= k_from``)."""
        if k_to == k_from:
            return x
        return x.index_select(2, torch.searchsorted(self.index[k_from], self.index[k_to]))

    def convolve(self, inputs: Sequence[Tensor], weight: Tensor, out_channels: int, k: int) -> Tensor:
        """A 3x3x3 isotropic convolution of compact maps: their concatenation times ``weight`` mixed into one map
        per distance class, each class summed over its taps; on ``mask (+) k`` in, on ``mask (+) (k - 1)`` out.

        Mixing and the (parameter-free) tap sums commute, so either runs first; the cheaper order is taken.
        Mixing first writes 4 ``out_channels``-wide class maps and spreads three of them; spreading first sums
        the ``C_in``-wide input over each tap class and mixes the 4 sums into the output. Both touch about
        ``C_out`` resp. ``C_in`` values per voxel and vertex a number of times that differs little, so the
        input is spread first when ``C_in <= out_channels`` (SHD's encoders and last decoder layer, 4 -> 8 and
        8 -> 8 channels at the finest level) and the classes are spread otherwise (a decoder's 24 -> 8).

        Both work a chunk of the vertex axis at a time (``SPREAD_CHUNK_ELEMENTS``) in dense buffers reused by
        every chunk (their zeros outside the support stay zero), so no dense map ever exists for all vertices
        at once. Inference only (no autograd).

        Parameters
        ----------
        inputs : sequence of Tensors ``(B, V, N_k, 1, 1, C_i)``
            Compact maps on ``mask (+) k`` (``N_k`` voxels), the parts of the input along its channels
            (``sum_i C_i = C_in``; a decoder's skip connection and unpooled map need not be concatenated).
        weight : Tensor ``(V, C_in, 4 out_channels)`` or ``(C_in, 4 out_channels)``
            Per vertex (the spectral filters) or shared; output columns are class-major (distance classes
            0, 1, sqrt 2, sqrt 3 as in :func:`~equidmri.nn.layers.stencil.isotropic_stencil`).
        out_channels : int
        k : int
            Dilation of the inputs' voxel set, >= 1.

        Returns
        -------
        Tensor, shape ``(B, V, N_{k-1}, 1, 1, out_channels)``
        """
        if sum(x.shape[-1] for x in inputs) <= out_channels:
            return self._spread_then_mix(concatenated(inputs), weight, out_channels, k)
        return self._mix_then_spread(inputs, weight, out_channels, k)

    def _chunk_rows(self, x: Tensor, channels: int, k: int) -> tuple[int, Tensor, Tensor, Tensor]:
        """Vertices per chunk for dense buffers of ``channels`` and the row indices of a chunk's 2D tables.

        Maps are handled as 2D tables of rows, one block of rows per (batch, vertex) slot of the chunk: row
        gathers and scatters on 2D tables are PyTorch's fast ones. Returns the chunk width and the rows of the
        compact input voxels in the dense buffers, of the output voxels in the dense buffers and of the output
        voxels among the compact input rows.
        """
        b, v, n = x.shape[:3]
        n_voxels = math.prod(self.shape)
        step = min(v, max(1, SPREAD_CHUNK_ELEMENTS // (b * n_voxels * channels)))
        slots = torch.arange(b * step, device=x.device)[:, None]
        scatter_rows = (slots * n_voxels + self.index[k]).flatten()
        tap_rows = (slots * n_voxels + self.index[k - 1]).flatten()
        centre_rows = (slots * n + torch.searchsorted(self.index[k], self.index[k - 1])).flatten()
        return step, scatter_rows, tap_rows, centre_rows

    def _spread_then_mix(self, x: Tensor, weight: Tensor, out_channels: int, k: int) -> Tensor:
        """:meth:`convolve` by summing the input over each tap class, then mixing the 4 sums."""
        b, v, n, c = x.shape[0], x.shape[1], x.shape[2], x.shape[-1]
        n_out, n_voxels = self.size(k - 1), math.prod(self.shape)
        step, scatter_rows, tap_rows, centre_rows = self._chunk_rows(x, c, k)
        # ([V,] 4 C_in, C_out): rows class-major, to mix the 4 class sums side by side in one product
        class_weights = weight.unflatten(-1, (4, out_channels)).movedim(-2, -3).flatten(-3, -2)
        out = x.new_empty(b, v, n_out, out_channels)
        buffer = x.new_zeros(b * step * n_voxels, c)  # zero outside the support for good
        for start in range(0, v, step):
            chunk = slice(start, min(start + step, v))
            width = chunk.stop - chunk.start
            rows, n_in, n_kept = b * width * n_voxels, b * width * n, b * width * n_out
            values = x[:, chunk].reshape(-1, c)
            buffer[:rows].index_copy_(0, scatter_rows[:n_in], values)
            sums = class_sums(buffer[:rows].view(b, width, *self.shape, c))
            classes = [values.index_select(0, centre_rows[:n_kept])]
            classes += [t.view(-1, c).index_select(0, tap_rows[:n_kept]) for t in sums]
            result = _mix(
                torch.cat(classes, dim=-1).view(b, width, n_out, 1, 1, 4 * c),
                class_weights[chunk] if class_weights.ndim == 3 else class_weights,
            )
            out[:, chunk] = result.view(b, width, n_out, out_channels)
        return out.view(b, v, -1, 1, 1, out_channels)

    def _mix_then_spread(self, inputs: Sequence[Tensor], weight: Tensor, out_channels: int, k: int) -> Tensor:
        """:meth:`convolve` by mixing the parts into the 4 class maps, then summing each class over its taps."""
        b, v, n = inputs[0].shape[:3]
        weights = weight.split([x.shape[-1] for x in inputs], dim=-2)  # the rows of each part
        n_voxels, n_out, n_classes = math.prod(self.shape), self.size(k - 1), 4
        step, scatter_rows, tap_rows, centre_rows = self._chunk_rows(inputs[0], out_channels, k)
        centre_rows = centre_rows * n_classes  # mixed rows are (slot, voxel, class)
        out = inputs[0].new_empty(b, v, n_out, out_channels)
        buffers = inputs[0].new_zeros(3, b * step * n_voxels, out_channels)  # zero outside the support for good
        for start in range(0, v, step):
            chunk = slice(start, min(start + step, v))
            width = chunk.stop - chunk.start
            mixed = sum(_mix(x[:, chunk], w[chunk] if w.ndim == 3 else w) for x, w in zip(inputs, weights))
            mixed = mixed.view(-1, n_classes, out_channels)
            rows = b * width * n_voxels
            for r, buffer in enumerate(buffers, start=1):
                buffer[:rows].index_copy_(0, scatter_rows[: b * width * n], mixed[:, r])
            taps = neighbour_sum(*(buffer[:rows].view(b, width, *self.shape, out_channels) for buffer in buffers))
            result = mixed.view(-1, out_channels).index_select(0, centre_rows[: b * width * n_out])
            result += taps.view(-1, out_channels).index_select(0, tap_rows[: b * width * n_out])
            out[:, chunk] = result.view(b, width, n_out, out_channels)
        return out.view(b, v, -1, 1, 1, out_channels)


def _mix(x: Tensor, weight: Tensor) -> Tensor:
    """``(B, W, N, 1, 1, C_i)`` maps times ``(W, C_i, M)`` per-vertex or ``(C_i, M)`` shared weights -> ``(B W N, M)``.

    Written as one ``bmm`` (or ``mm``): a broadcast 4D ``matmul`` takes a slower path on the CPU.
    """
    b, width, n, c = x.shape[0], x.shape[1], x.shape[2], x.shape[-1]
    if weight.ndim == 2:
        return x.reshape(-1, c) @ weight
    weight = weight.expand(b, *weight.shape).reshape(b * width, c, -1)
    return torch.bmm(x.reshape(b * width, n, c), weight).view(-1, weight.shape[-1])
