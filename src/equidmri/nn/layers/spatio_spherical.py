"""E(3) x SO(3) convolution: an isotropic 3D kernel times a Chebyshev graph filter on the sphere.

``f_out(x) = sum_{y in P(x)} sum_k alpha_k(||x - y||) T_k(L) f(y)`` (Elaldi et al., MIDL 2023 (RT-ESD)
and NeurIPS 2024 (SHD), eq. 2). The spatial kernel is isotropic: one weight per distance class, for 3x3x3
the classes ||x - y|| in {0, 1, sqrt 2, sqrt 3}. ``kernel_size=1`` gives the voxel-wise Chebyshev
convolution of ESD (Elaldi et al., IPMI 2021). ``T_k`` are the precomputed Chebyshev polynomials of the
hemispherical Laplacian L+ (``hemisphere=True``, SHD) or of the full-sphere Laplacian (RT-ESD).

Four computation paths give the same outputs from the same parameters:

- ``method="sparse-recursion"``: DeepSphere's and RT-ESD's (Defferrard et al., NeurIPS 2016, §2.1): the
  rescaled Laplacian kept sparse, ``T_k x = 2 L T_{k-1} x - T_{k-2} x`` computed per call with
  ``torch.sparse.mm``;
- ``method="dense-recursion"``: the same recursion with the dense Laplacian;
- ``method="chebyshev"``: the SHD paper's (precomputed dense ``T_k``, one ``(K V, V)`` matmul);
- ``method="spectral"`` (default): L is symmetric, so ``sum_k w_k T_k(L) = U diag(sum_k w_k T_k(lambda)) U^T``.
  The layer transforms its input once (``U^T x``), mixes channels per eigenvalue with the filter's
  spectral response, applies the isotropic stencil and transforms back (``U y``): two transforms instead
  of K V x V matmuls, and channel mixing without the factor K. U is the symmetry-adapted eigenbasis of the
  grid's D4 symmetry, block diagonal after an orbit-wise change of basis
  (:class:`~equidmri.nn.layers.eigenbasis.EigenbasisTransform`), so each transform costs about a quarter
  of a dense V x V product in arithmetic.

The first two exist for the efficiency ablation (``equidmri bench layers``; SHD paper Fig. 4).

Two ways apply the isotropic spatial kernel, again with the same outputs:

- ``spatial="stencil"`` (default): the filtered maps are mixed into one map per distance class, then a
  parameter-free stencil sums each class over its taps (4 classes instead of 27 taps of channel mixing);
- ``spatial="conv3d"``: the reference implementations' (RT-ESD, SHD): the 4 class weights are expanded into a
  dense 3x3x3 kernel over ``K * C_in`` input channels and applied with ``torch.nn.functional.conv3d`` to the
  ``(B V, K C_in, X, Y, Z)`` channels-first layout. It exists so that the ablation's variants a-d are the
  paper's layers; the spectral path has no per-polynomial maps and only takes the stencil.

Layout. Feature maps inside the networks are **vertex-major, channels-last**: ``(B, V, X, Y, Z, C)``.
In that layout the spherical filter is one dense matmul over V, the channel mixing one matmul over C per
Chebyshev order and the isotropic stencil a few shifted additions, with no transposition between layers
(transposes cost 62% of the time of a conv3d-based layout, measured on 2 CPU cores).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from equidmri.nn.layers.eigenbasis import EigenbasisTransform, UnpoolingAnalysis
from equidmri.nn.layers.grid import SphereGrid
from equidmri.nn.layers.pooling import Unpooled
from equidmri.nn.layers.stencil import isotropic_stencil
from equidmri.nn.layers.support import MaskSupport, channel_parts, concatenated
from equidmri.runtime import matmul
from equidmri.sphere.graph import chebyshev_polynomials, chebyshev_stack, filter_laplacian

KERNEL_FORMS = ("full", "rank1")
METHODS = ("spectral", "chebyshev", "dense-recursion", "sparse-recursion")
SPATIAL = ("stencil", "conv3d")
KERNEL_SIZES = {1: 1, 3: 4}  # kernel edge -> number of distance classes (3x3x3: 0, 1, sqrt 2, sqrt 3)


class SpatioSphericalConv(nn.Module):
    """E(3) x SO(3)-equivariant convolution on ``(B, V, X, Y, Z, C_in)`` -> ``(B, V, X, Y, Z, C_out)``.

    Parameters
    ----------
    in_channels, out_channels : int
    grid : SphereGrid
        Sphere (V) or hemisphere (V+) at one nside.
    cheb_order : int
        Number of Chebyshev polynomials K_cheb (degree ``cheb_order - 1``); SHD default 5.
    kernel_size : {1, 3}
        Edge of the isotropic spatial kernel; 'same' zero padding keeps X, Y, Z.
    kernel : {"full", "rank1"}
        ``"full"``: one weight per (out, in, k, distance class) (eq. 2); ``"rank1"``: the SHD reference
        code's factorisation ``w[o, i, k] * w_iso[o, i, r]``.
    sigma : float, optional
        Graph kernel width (default ``0.8 / nside``).
    method : {"spectral", "chebyshev", "dense-recursion", "sparse-recursion"}
        Computation path (same function of the same parameters; see the module docstring).
    spatial : {"stencil", "conv3d"}
        How the isotropic kernel is applied (same function; see the module docstring).
    orbit_order : bool
        Maps with their vertex axis in the eigenbasis's orbit order
        (:func:`~equidmri.nn.layers.eigenbasis.orbit_vertex_order`) instead of the grid's: the same function,
        without a gather and a scatter per transform (``method="spectral"`` on V >= 384 only).

    Raises
    ------
    ValueError
        On non-positive channel counts, an unsupported kernel size, kernel form, method or spatial path,
        ``spatial="conv3d"`` with ``method="spectral"``, or ``orbit_order`` without the spectral block transform.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        grid: SphereGrid,
        cheb_order: int = 5,
        kernel_size: int = 3,
        kernel: str = "full",
        sigma: float | None = None,
        bias: bool = True,
        method: str = "spectral",
        spatial: str = "stencil",
        orbit_order: bool = False,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channel counts must be >= 1, got {in_channels} -> {out_channels}")
        if kernel not in KERNEL_FORMS:
            raise ValueError(f"kernel must be one of {KERNEL_FORMS}, got {kernel!r}")
        if kernel_size not in KERNEL_SIZES:
            raise ValueError(f"kernel_size must be one of {sorted(KERNEL_SIZES)}, got {kernel_size}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if spatial not in SPATIAL or (spatial == "conv3d" and method == "spectral"):
            raise ValueError(f"spatial must be one of {SPATIAL} ('stencil' with method 'spectral'), got {spatial!r}")
        if isinstance(cheb_order, bool) or not isinstance(cheb_order, int) or cheb_order < 1:
            raise ValueError(f"cheb_order must be an int >= 1, got {cheb_order!r}")
        if orbit_order and method != "spectral":
            raise ValueError(f"orbit_order needs method 'spectral', got {method!r}")
        self.in_channels, self.out_channels, self.grid = in_channels, out_channels, grid
        self.cheb_order, self.kernel_size, self.kernel, self.method = cheb_order, kernel_size, kernel, method
        self.spatial = spatial
        n_classes = KERNEL_SIZES[kernel_size]
        # Geometry stays float64 and is cast to the input's dtype in forward (a VxV cast, ~0.1 ms), so
        # that .double() gives float64-exact results rather than upcast float32 roundings.
        if method == "chebyshev":
            stack = torch.tensor(chebyshev_stack(grid.nside, cheb_order, sigma, grid.hemisphere))
            self.register_buffer("cheb", stack.reshape(-1, grid.n_vertices), persistent=False)
            self._filter = self._forward_chebyshev
        elif method in ("dense-recursion", "sparse-recursion"):
            laplacian = torch.tensor(filter_laplacian(grid.nside, sigma, grid.hemisphere))  # L+ or L~, (V, V)
            if method == "sparse-recursion":
                laplacian = laplacian.to_sparse_coo().coalesce()  # `@` then runs a sparse-dense product
            self.register_buffer("laplacian", laplacian, persistent=False)
            self._filter = self._forward_recursion
        else:
            self.eigenbasis = EigenbasisTransform(grid, sigma, orbit_order)  # D4 block eigenbasis, non-persistent
            response = chebyshev_polynomials(self.eigenbasis.eigvals, cheb_order)  # (K, V), spectral order
            self.register_buffer("cheb_response", torch.tensor(response), persistent=False)
            self._filter = self._forward_spectral
        std = math.sqrt(2.0 / (in_channels * cheb_order * kernel_size**3))  # He initialisation
        if kernel == "full":
            self.weight = nn.Parameter(torch.randn(cheb_order, in_channels, n_classes, out_channels) * std)
        else:
            self.weight = nn.Parameter(torch.randn(cheb_order, in_channels, 1, out_channels) * std)
            self.weight_iso = nn.Parameter(torch.ones(1, in_channels, n_classes, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self._unpooling_spectra: dict = {}  # forward_parts: UnpoolingAnalysis per (unpooling, dtype, device)

    def class_weight(self) -> Tensor:
        """Weights per Chebyshev order, input channel, distance class and output, ``(K_cheb, C_in, R, C_out)``."""
        return self.weight if self.kernel == "full" else self.weight * self.weight_iso

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 6 or x.shape[-1] != self.in_channels or x.shape[1] != self.grid.n_vertices:
            raise ValueError(f"expected (B, {self.grid.n_vertices}, X, Y, Z, {self.in_channels}), got {tuple(x.shape)}")
        out = self._filter(x)
        if self.bias is None:
            return out
        return out + self.bias if torch.is_grad_enabled() else out.add_(self.bias)  # a new tensor

    def forward_on(self, x: Tensor | Sequence[Tensor], support: MaskSupport, k: int) -> Tensor:
        """Masked execution: ``x`` compact on ``mask (+) k`` -> the output compact on ``mask (+) (k - 1)``.

        ``x`` is one map ``(B, V, N_k, 1, 1, C_in)`` or a sequence of maps whose channels add up to C_in (the
        parts of a concatenation, which the spectral path never builds). Only for ``kernel_size=3`` (a
        voxel-wise layer runs on compact maps as they are). The spectral path transforms each part on the
        compact voxels and mixes and spreads its distance classes chunk by chunk of the spectrum
        (:meth:`MaskSupport.convolve`); the other paths run on the dense grid (see
        :mod:`equidmri.nn.layers.support`). Inference only.
        """
        if self.method != "spectral":
            return support.compact(self(support.dense(concatenated(x), k)), k - 1)
        parts = channel_parts(x)
        response = self._spectral_response(parts[0].dtype).permute(1, 2, 0, 3).flatten(2)  # (V, C_in, R C_out)
        out = support.convolve([self._spectrum(part) for part in parts], response, self.out_channels, k)
        out = self._spectral_synthesis(out)
        return out if self.bias is None else out.add_(self.bias)  # a new tensor: add in place

    def forward_parts(self, parts: Sequence[Tensor | Unpooled]) -> Tensor:
        """A voxel-wise spectral convolution (``kernel_size=1``) of the concatenation of ``parts`` along the channels,
        without building it: each part is analysed and mixed on its own, and an
        :class:`~equidmri.nn.layers.pooling.Unpooled` part straight from its coarse map, through the spectrum of
        the unpooling (``U^T P``, :class:`~equidmri.nn.layers.eigenbasis.UnpoolingAnalysis`) instead of the
        unpooled map's analysis. Parts ``(B, V, X, Y, Z, C_i)`` (``sum_i C_i = C_in``) -> ``(B, V, X, Y, Z, C_out)``, as
        :meth:`forward` of their concatenation. Inference only.

        Raises
        ------
        ValueError
            Unless ``kernel_size`` is 1 and ``method`` is ``"spectral"``.
        """
        if self.kernel_size != 1 or self.method != "spectral":
            raise ValueError("forward_parts needs kernel_size 1 and method 'spectral'")
        dtype = parts[0].coarse.dtype if isinstance(parts[0], Unpooled) else parts[0].dtype
        response = self._spectral_response(dtype)[0]  # (V, C_in, C_out): one distance class
        mixed, start = None, 0
        for part in parts:
            if isinstance(part, Unpooled):
                coarse = part.coarse
                spectrum = self._unpooling_spectrum(part.unpool, coarse)(coarse.reshape(*coarse.shape[:2], -1))
                shape = (coarse.shape[0], spectrum.shape[1]) + coarse.shape[2:]
            else:
                spectrum, shape = self._spectrum(part), part.shape
            c = shape[-1]
            term = matmul(spectrum.reshape(shape[0], shape[1], -1, c), response[:, start : start + c].contiguous())
            mixed, start = term if mixed is None else mixed.add_(term), start + c
        out = self._spectral_synthesis(mixed.reshape(shape[:-1] + (self.out_channels,)))
        return out if self.bias is None else out.add_(self.bias)

    def _unpooling_spectrum(self, unpool: nn.Module, like: Tensor) -> UnpoolingAnalysis:
        """``x -> U^T P x`` for ``unpool`` (``P``: its copy of each parent to its children) in ``like``'s dtype and
        device (:class:`~equidmri.nn.layers.eigenbasis.UnpoolingAnalysis`), built once and kept."""
        key = (unpool, like.dtype, like.device)
        if key not in self._unpooling_spectra:
            self._unpooling_spectra[key] = UnpoolingAnalysis(self.eigenbasis, unpool, like.dtype, like.device)
        return self._unpooling_spectra[key]

    def _spectrum(self, x: Tensor) -> Tensor:
        """``U^T x`` of ``(B, V, X, Y, Z, C)`` vertex values, same shape."""
        return self.eigenbasis.analysis(x.reshape(x.shape[0], x.shape[1], -1)).reshape(x.shape)

    def _spectral_response(self, dtype: torch.dtype) -> Tensor:
        """Spectral response of each (class, in, out) filter at each eigenvalue, ``(R, V, C_in, C_out)``."""
        return torch.einsum("kv,kiro->rvio", self.cheb_response.to(dtype), self.class_weight())

    def _spectral_classes(self, x: Tensor) -> list[Tensor]:
        """``(B, V, X, Y, Z, C_in)`` -> one ``(B, V, X, Y, Z, C_out)`` map per distance class, in the eigenbasis."""
        b, v = x.shape[:2]
        spectrum = self._spectrum(x).reshape(b, v, -1, x.shape[-1])
        shape = x.shape[:-1] + (self.out_channels,)
        return [matmul(spectrum, response).reshape(shape) for response in self._spectral_response(x.dtype)]

    def _spectral_synthesis(self, y: Tensor) -> Tensor:
        """``(B, V, X, Y, Z, C_out)`` in the eigenbasis -> vertex values, same shape."""
        return self.eigenbasis.synthesis(y.reshape(y.shape[0], y.shape[1], -1)).reshape(y.shape)  # U y

    def _forward_spectral(self, x: Tensor) -> Tensor:
        return self._spectral_synthesis(isotropic_stencil(self._spectral_classes(x)))

    def _conv3d(self, filtered: Tensor) -> Tensor:
        """``(B, V, K, C_in, X, Y, Z)`` maps ``T_k x`` -> ``(B, V, X, Y, Z, C_out)`` by one ``conv3d``."""
        b, v, k, c, nx, ny, nz = filtered.shape
        edge = self.kernel_size
        offsets = torch.arange(edge) - edge // 2
        squared = offsets[:, None, None] ** 2 + offsets[None, :, None] ** 2 + offsets[None, None, :] ** 2
        kernel = self.class_weight().permute(3, 0, 1, 2).reshape(self.out_channels, k * c, -1)[..., squared]
        out = nn.functional.conv3d(filtered.reshape(b * v, k * c, nx, ny, nz), kernel, padding=edge // 2)
        return out.reshape(b, v, self.out_channels, nx, ny, nz).permute(0, 1, 3, 4, 5, 2)

    def _forward_chebyshev(self, x: Tensor) -> Tensor:
        b, v, nx, ny, nz, c = x.shape
        # (K*V, V) @ (B, V, X*Y*Z*C) -> (B, K, V, X*Y*Z, C): all T_k x in one matmul, no transposition.
        filtered = (self.cheb.to(x.dtype) @ x.reshape(b, v, -1)).reshape(b, self.cheb_order, -1, c)
        if self.spatial == "conv3d":
            maps = filtered.reshape(b, self.cheb_order, v, nx, ny, nz, c).permute(0, 2, 1, 6, 3, 4, 5)
            return self._conv3d(maps)
        weight = self.class_weight()
        n_classes = weight.shape[2]
        mixed = filtered[:, 0] @ weight[0].reshape(c, -1)
        for k in range(1, self.cheb_order):
            mixed = mixed + filtered[:, k] @ weight[k].reshape(c, -1)
        mixed = mixed.reshape(b, v, nx, ny, nz, n_classes, self.out_channels)
        return isotropic_stencil(mixed.unbind(5))

    def _forward_recursion(self, x: Tensor) -> Tensor:
        b, v, nx, ny, nz, c = x.shape
        laplacian = self.laplacian.to(x.dtype)
        weight = self.class_weight()
        n_classes = weight.shape[2]
        # (V, B * X*Y*Z * C): a view for B = 1; T_k x by the three-term recursion, mixed as it comes
        previous, current = None, x.transpose(0, 1).reshape(v, -1)
        polynomials, mixed = [], 0
        for k in range(self.cheb_order):
            if k:
                step = laplacian @ current
                previous, current = current, (step if k == 1 else 2.0 * step - previous)
            if self.spatial == "conv3d":
                polynomials.append(current)
            else:
                mixed = mixed + current.reshape(-1, c) @ weight[k].reshape(c, -1)
        if self.spatial == "conv3d":  # (K, V, B, X, Y, Z, C) -> (B, V, K, C, X, Y, Z)
            maps = torch.stack(polynomials).reshape(-1, v, b, nx, ny, nz, c).permute(2, 1, 0, 6, 3, 4, 5)
            return self._conv3d(maps)
        mixed = mixed.reshape(v, b, nx, ny, nz, n_classes, self.out_channels).transpose(0, 1)
        return isotropic_stencil(mixed.unbind(5))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, nside={self.grid.nside}, hemisphere={self.grid.hemisphere}, "
            f"cheb_order={self.cheb_order}, kernel_size={self.kernel_size}, kernel={self.kernel!r}, "
            f"method={self.method!r}, spatial={self.spatial!r}"
        )
