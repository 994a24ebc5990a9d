"""SE(3)-equivariant convolutions on the 6D p×q-space of diffusion MRI, built on e3nn.

A roto-translation of the head roto-translates the image in position space (p-space, the voxel grid) and
rotates it in q-space (the acquired q-vectors). :class:`PQConv` maps a field of spherical tensors over voxels ×
q-samples to another such field and commutes with exactly that joint action (Müller, Golkov, Tomassini &
Cremers, "Rotation-Equivariant Deep Learning for Diffusion MRI", arXiv:2102.06942, §3):

    out(p, q_o) = Σ_{Δp, q_i} K(Δp, q_o, q_i) in(p + Δp, q_i),
    K = Σ W[c_in, c_out, k1, k2, k3, l_f, l_p, l_q] φ1_k1(|Δp|) φ2_k2(|q_o|) φ3_k3(|q_i|)
          CG_{l_in, l_f -> l_out} (CG_{l_p, l_q -> l_f} (Y_l_p(Δp) ⊗ Y_l_q(Δq))),

with Δp = p_in - p_out (voxels), Δq = q̂_o - q̂_i (unit q-vectors; zero for b = 0), Gaussian radial bases φ
(e3nn ``soft_one_hot_linspace``), real spherical harmonics Y (e3nn, ``component`` normalisation; Y_l(0) = 0
for l > 0) and Clebsch–Gordan coefficients from e3nn (``o3.wigner_3j`` and ``o3.FullyConnectedTensorProduct``,
whose weights are W). The paper's "TP ± 1" selection rule picks the filter orders:
|l_p - l_q| <= l_f <= l_p + l_q, |l_f - l_p| <= 1, |l_f - l_q| <= 1; the tensor product adds
|l_in - l_f| <= l_out <= l_in + l_f and parity. ``kernel="combined"`` is the variant the paper found weaker
("pq_diff"): one SH of the combined offset, Y_l(Δp - Δq) for l <= max(lmax_p, lmax_q), with the same radial
parts; for a sum coordinate s = p + q̂ it is the direction of s_in - s_out.

Cost. The kernel of the tensor-product variant is a sum of separable terms, P_a(Δp) Q_b(q_o, q_i) M_ab, with
a = (k1, l_p, m_p), b = (k2, k3, l_q, m_q), Q_b = φ2_k2(|q_o|) φ3_k3(|q_i|) Y_lq,mq(Δq) and M_ab a
``(D_in, D_out)`` matrix from W and the CG coefficients. The separable methods use that and never form the
``(k³, Q, Q, D_in, D_out)`` 6D kernel: fixed 3D stencils P_a on every input channel, then

- ``"pwq"``: the learned weights (with φ3, per input sample), then one product with the ``(Q, Q·K2·L_q)``
  matrix φ2(|q_o|) Y(Δq); multiply-adds per voxel Q·k³·D_in·D_p + Q·D_in·D_p·K2·L_q·D_out + Q²·K2·L_q·D_out;
- ``"pqw"``: first the ``(Q·K3·L_q, Q)`` matrix Y(Δq) φ3(|q_i|), then the weights and φ2:
  Q·k³·D_in·D_p + Q²·K3·L_q·D_in·D_p + Q·K3·L_q·D_in·D_p·K2·D_out;

with D_p = K1 (lmax_p+1)², L_q = (lmax_q+1)². ``"dense"`` (the reference code's algorithm, and the only one for
``kernel="combined"``, whose kernel does not separate) builds the 6D kernel and applies it as one ``conv3d`` with
``Q·D_in -> Q·D_out`` channels: Q²·k³·D_in·D_out. By default (``method=None``) a layer takes the method with the
fewest multiply-adds (:meth:`PQConv.macs_per_voxel`): "pqw" for few input channels (the DWI), "pwq" for wide
hidden layers. ``equidmri bench pq-layer`` measures all three.

Frames and units: p in voxel indices along the tensor axes X, Y, Z (isotropic voxels; the voxel-axis frame of
the library, DESIGN §6), q-vectors in the same frame, from :func:`q_space_vectors`. Layout
``(B, Q, X, Y, Z, D)``: the q-sample axis where :class:`SpatioSphericalConv` has its vertex axis, and the e3nn
irreps dimension D = Σ mul·(2l+1) last.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from equidmri.extras import require_extra

require_extra("e3nn", "lesions", "the p×q-space layers (equidmri.nn.layers.pq_space)")
from e3nn import o3  # noqa: E402
from e3nn.math import soft_one_hot_linspace  # noqa: E402

B_REF = 1000.0  # s/mm²: q-lengths are in units of the q-length at b = 1000 s/mm², |q| = sqrt(b / B_REF)
KERNELS = ("tp", "combined")
METHODS = ("pwq", "pqw", "dense")
SH_NORMALIZATION = "component"  # |Y_l|² = 2l + 1 on unit vectors, the reference code's default


def q_space_vectors(bvals: Tensor, bvecs: Tensor, b_ref: float = B_REF) -> Tensor:
    """q-vectors of an acquisition: q = bvec · sqrt(b / b_ref), dimensionless.

    At a fixed diffusion time b ∝ |q|², so |q| is the q-length relative to that of ``b_ref``.

    Parameters
    ----------
    bvals : Tensor, shape ``(N,)``
        b-values, s/mm², >= 0.
    bvecs : Tensor, shape ``(N, 3)``
        b-vectors in the voxel-axis frame, unit norm (any norm for b = 0 volumes; they get q = 0).
    b_ref : float
        Reference b-value, s/mm².

    Returns
    -------
    Tensor, shape ``(N, 3)``

    Raises
    ------
    ValueError
        If the shapes disagree, a b-value is negative or ``b_ref`` is not positive.
    """
    if bvals.ndim != 1 or bvecs.shape != (bvals.shape[0], 3):
        raise ValueError(f"expected bvals (N,) and bvecs (N, 3), got {tuple(bvals.shape)} and {tuple(bvecs.shape)}")
    if bool((bvals < 0).any()) or b_ref <= 0:
        raise ValueError(f"b-values must be >= 0 and b_ref > 0, got min {float(bvals.min())} and {b_ref}")
    directions = nn.functional.normalize(bvecs.to(torch.float64), dim=-1)
    return directions * torch.sqrt(bvals.to(torch.float64) / b_ref)[:, None]


def p_offsets(kernel_size: int) -> Tensor:
    """Voxel offsets Δp of a cubic kernel, ``(kernel_size³, 3)`` float64, in ``conv3d`` weight order."""
    r = kernel_size // 2
    return torch.tensor(list(itertools.product(range(-r, r + 1), repeat=3)), dtype=torch.float64)


def radial_basis(lengths: Tensor, number: int, end: float) -> Tensor:
    """Gaussian radial basis on ``[0, end]``: ``(..., number)``; a constant 1 when ``number == 1``."""
    if number == 1 or end <= 0:
        return torch.ones(*lengths.shape, number, dtype=lengths.dtype)
    return soft_one_hot_linspace(lengths, 0.0, end, number, basis="gaussian", cutoff=False)


def spherical_harmonics(lmax: int, vectors: Tensor) -> Tensor:
    """e3nn real SH of the directions of ``vectors``: ``(..., (lmax+1)²)``, zero for l > 0 at the zero vector."""
    return o3.spherical_harmonics(list(range(lmax + 1)), vectors, normalize=True, normalization=SH_NORMALIZATION)


def tp_filter_paths(lmax_p: int, lmax_q: int) -> list[tuple[int, int, int]]:
    """(l_p, l_q, l_f) of the "TP ± 1" rule (Müller et al., §3; the reference code's default)."""
    return [
        (lp, lq, lf)
        for lp in range(lmax_p + 1)
        for lq in range(lmax_q + 1)
        for lf in range(abs(lp - lq), lp + lq + 1)
        if abs(lf - lp) <= 1 and abs(lf - lq) <= 1
    ]


def tp_coupling(paths: list[tuple[int, int, int]], radial: tuple[int, int, int], lmax_p: int, lmax_q: int) -> Tensor:
    """CG tensor ``(N_f, D_p, D_q)`` float64: filter component f from P_a(Δp) Q_b(q_o, q_i).

    a = k1·(lmax_p+1)² + l_p² + m_p, b = (k2·K3 + k3)·(lmax_q+1)² + l_q² + m_q; the filter irreps list one entry
    ``K1·K2·K3 x l_f`` per path, multiplicity index (k1, k2, k3). Coefficients: ``o3.wigner_3j`` × sqrt(2 l_f + 1).
    """
    k1s, k2s, k3s = radial
    n_p, n_q = (lmax_p + 1) ** 2, (lmax_q + 1) ** 2
    units = list(itertools.product(range(k1s), range(k2s), range(k3s)))
    n_f = sum(len(units) * (2 * lf + 1) for _, _, lf in paths)
    coupling = torch.zeros(n_f, k1s * n_p, k2s * k3s * n_q, dtype=torch.float64)
    f = 0
    for lp, lq, lf in paths:
        cg = o3.wigner_3j(lp, lq, lf, dtype=torch.float64) * math.sqrt(2 * lf + 1)  # (2lp+1, 2lq+1, 2lf+1)
        for k1, k2, k3 in units:
            a = k1 * n_p + lp**2
            b = (k2 * k3s + k3) * n_q + lq**2
            coupling[f : f + 2 * lf + 1, a : a + 2 * lp + 1, b : b + 2 * lq + 1] = cg.permute(2, 0, 1)
            f += 2 * lf + 1
    return coupling


def macs_per_voxel(
    method: str,
    n_q: int,
    kernel_size: int,
    d_in: int,
    d_out: int,
    lmax_p: int,
    lmax_q: int,
    radial: tuple[int, int, int],
) -> int:
    """Multiply-adds per voxel of one forward of a tensor-product :class:`PQConv` (module docstring, "Cost"),
    counted from the shapes: the stencils, matrix products and the dense ``conv3d``; the weights' CG maps and
    element-wise scalings are left out.

    Parameters
    ----------
    method : {"pwq", "pqw", "dense"}
    n_q, kernel_size, d_in, d_out, lmax_p, lmax_q : int
        Q, the p-kernel edge, the irreps dimensions and the SH orders.
    radial : (K1, K2, K3)
        Radial functions of |Δp|, |q_o| and |q_i|.
    """
    q, taps = n_q, kernel_size**3
    if method == "dense":
        return q * q * taps * d_in * d_out
    k1s, k2s, k3s = radial
    d_p, l_q = k1s * (lmax_p + 1) ** 2, (lmax_q + 1) ** 2
    stencils = q * taps * d_in * d_p
    if method == "pwq":
        return stencils + q * d_in * d_p * k2s * l_q * d_out + q * q * k2s * l_q * d_out
    return stencils + q * q * k3s * l_q * d_in * d_p + q * k3s * l_q * d_in * d_p * k2s * d_out


class PQConv(nn.Module):
    """Joint SE(3)-equivariant convolution on voxels × q-samples: ``(B, Q, X, Y, Z, D_in) -> (B, Q, X, Y, Z, D_out)``.

    Parameters
    ----------
    irreps_in, irreps_out : str or e3nn ``o3.Irreps``
        Spherical-tensor channels, e.g. ``"1x0e"`` for the DWI (scalars), ``"8x0e + 2x1o + 2x2e"``.
    q_vectors : Tensor, shape ``(Q, 3)``
        q-vectors of the samples (:func:`q_space_vectors`); the output uses the same samples.
    kernel : {"tp", "combined"}
        Tensor product of the p- and q-offset SH (the paper's better variant) or one SH of the combined offset.
    kernel_size : int
        Odd edge of the cubic p-kernel, voxels (1: voxel-wise).
    lmax_p, lmax_q : int
        Largest SH order of the p-offset and of the q-offset.
    n_radial_p, n_radial_q : int
        Radial basis functions of |Δp| (on [0, (kernel_size // 2)·sqrt 3]) and of each of |q_o|, |q_i|
        (on [0, q_max]).
    q_max : float, optional
        End of the q radial basis; default the largest |q| of ``q_vectors`` (1 if all are zero).
    method : {"pwq", "pqw", "dense"}, optional
        How the kernel is applied (module docstring); default: the one with the fewest multiply-adds for the
        current q-samples ("dense" for "combined").
    bias : bool
        A learned bias on each scalar (0e) output channel.

    Raises
    ------
    ValueError
        On a wrong ``q_vectors`` shape, an even or non-positive kernel size, negative lmax, fewer than one
        radial function, an unknown kernel or method, a separable method with "combined", or an output irrep that no
        path of the tensor product reaches.

    References
    ----------
    Müller, Golkov, Tomassini & Cremers, arXiv:2102.06942 (2021), §3, eq. for the p×q kernel; Geiger & Smidt,
    e3nn (2022), for the Clebsch–Gordan products.
    """

    def __init__(
        self,
        irreps_in: str | o3.Irreps,
        irreps_out: str | o3.Irreps,
        q_vectors: Tensor,
        kernel: str = "tp",
        kernel_size: int = 3,
        lmax_p: int = 1,
        lmax_q: int = 2,
        n_radial_p: int = 2,
        n_radial_q: int = 2,
        q_max: float | None = None,
        method: str | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if (method is not None and method not in METHODS) or (kernel == "combined" and method not in (None, "dense")):
            raise ValueError(f"method must be one of {METHODS} ('dense' for the combined kernel), got {method!r}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
        if min(lmax_p, lmax_q) < 0 or min(n_radial_p, n_radial_q) < 1:
            raise ValueError(f"need lmax >= 0 and >= 1 radial function, got {lmax_p, lmax_q, n_radial_p, n_radial_q}")
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.kernel, self.requested_method, self.kernel_size = kernel, method, kernel_size
        self.lmax_p, self.lmax_q, self.n_radial_p, self.n_radial_q = lmax_p, lmax_q, n_radial_p, n_radial_q
        self.radial = (n_radial_p, n_radial_q, n_radial_q)
        units = n_radial_p * n_radial_q**2
        if kernel == "tp":
            self.paths = tp_filter_paths(lmax_p, lmax_q)
            irreps_filter = o3.Irreps([(units, (lf, (-1) ** (lp + lq))) for lp, lq, lf in self.paths])
            self.register_buffer(
                "coupling", tp_coupling(self.paths, self.radial, lmax_p, lmax_q).to(torch.get_default_dtype()), False
            )
        else:
            self.lmax = max(lmax_p, lmax_q)
            irreps_filter = o3.Irreps([(units, (l, (-1) ** l)) for l in range(self.lmax + 1)])
        self.irreps_filter = irreps_filter
        self.tp = o3.FullyConnectedTensorProduct(self.irreps_in, irreps_filter, self.irreps_out, compile_right=True)
        reached = {self.tp.irreps_out[ins.i_out].ir for ins in self.tp.instructions}
        missing = [str(ir) for _, ir in self.irreps_out if ir not in reached]
        if missing:
            raise ValueError(f"no path of {self.irreps_in} x {irreps_filter} reaches the output irreps {missing}")
        scalars = [i for i, (_, ir) in enumerate(self.irreps_out) if ir == o3.Irrep("0e")]
        slices = self.irreps_out.slices()
        index = [torch.arange(*slices[i].indices(self.irreps_out.dim)) for i in scalars]
        self.register_buffer("bias_index", torch.cat(index) if index else torch.zeros(0, dtype=torch.long), False)
        self.bias = nn.Parameter(torch.zeros(len(self.bias_index))) if bias and scalars else None
        self.q_max = q_max
        self.set_q_vectors(q_vectors)

    def set_q_vectors(self, q_vectors: Tensor) -> None:
        """Rebuild the geometry for new q-samples (learned weights kept): the same model on another acquisition
        or on rotated b-vectors.

        Raises
        ------
        ValueError
            If ``q_vectors`` is not ``(Q, 3)`` with Q >= 1.
        """
        if q_vectors.ndim != 2 or q_vectors.shape[1] != 3 or q_vectors.shape[0] < 1:
            raise ValueError(f"q_vectors must have shape (Q, 3), got {tuple(q_vectors.shape)}")
        dtype, device = self.tp.weight.dtype, self.tp.weight.device
        q = q_vectors.detach().to(torch.float64, copy=True).cpu()
        lengths = q.norm(dim=-1)
        q_max = self.q_max if self.q_max is not None else float(lengths.max())
        self.n_q = q.shape[0]
        offsets = p_offsets(self.kernel_size)  # (k³, 3)
        p_radial = radial_basis(offsets.norm(dim=-1), self.n_radial_p, (self.kernel_size // 2) * math.sqrt(3))
        q_radial = radial_basis(lengths, self.n_radial_q, q_max if q_max > 0 else 1.0)  # (Q, K)
        dq = nn.functional.normalize(q, dim=-1)[:, None, :] - nn.functional.normalize(q, dim=-1)[None, :, :]
        if self.kernel == "tp":
            p_basis = (p_radial[:, :, None] * spherical_harmonics(self.lmax_p, offsets)[:, None, :]).flatten(1)
            y_q = spherical_harmonics(self.lmax_q, dq)  # (Q_o, Q_i, (lmax_q+1)²)
            geometry = {"p_basis": p_basis, "q_radial": q_radial, "y_q": y_q}
        else:
            y = spherical_harmonics(self.lmax, offsets[:, None, None, :] - dq[None])  # (k³, Q_o, Q_i, L)
            # filter component (k1, k2, k3, l m) = φ1 φ2 φ3 Y: the p and q radial parts stay separate factors
            geometry = {"p_radial": p_radial, "q_radial": q_radial, "y_combined": y}
        for name, value in geometry.items():
            self.register_buffer(name, value.to(dtype=dtype, device=device), persistent=False)
        if self.requested_method is not None:
            self.method = self.requested_method
        else:
            self.method = min(METHODS if self.kernel == "tp" else ("dense",), key=self.macs_per_voxel)
        self._apply_kernel = getattr(self, f"_{self.method}")

    def macs_per_voxel(self, method: str) -> int:
        """Multiply-adds per voxel and batch element of a forward pass with ``method`` (:func:`macs_per_voxel`)."""
        return macs_per_voxel(
            method, self.n_q, self.kernel_size, self.irreps_in.dim, self.irreps_out.dim, self.lmax_p, self.lmax_q,
            self.radial,
        )  # fmt: skip

    def _filter_matrices(self) -> Tensor:
        """``(N_f, D_in, D_out)``: the learned CG map of each filter component, scaled by 1/sqrt(k³ Q)."""
        eye = torch.eye(self.irreps_filter.dim, dtype=self.tp.weight.dtype, device=self.tp.weight.device)
        return self.tp.right(eye) / math.sqrt(self.kernel_size**3 * self.n_q)

    def dense_kernel(self) -> Tensor:
        """The full 6D kernel ``(k³, Q_o, Q_i, D_in, D_out)``, differentiable in the weights."""
        m = self._filter_matrices()
        if self.kernel == "tp":
            m_ab = torch.einsum("fab,fxy->abxy", self.coupling, m)
            q_basis = torch.einsum("ob,ic,oil->oibcl", self.q_radial, self.q_radial, self.y_q).flatten(2)
            return torch.einsum("pa,oiaxy->poixy", self.p_basis, torch.einsum("oib,abxy->oiaxy", q_basis, m_ab))
        k1, k2, k3 = self.radial
        n_l = (self.lmax + 1) ** 2
        m = torch.cat([block.reshape(k1, k2, k3, -1, *m.shape[1:]) for block in self._per_l(m)], dim=3)
        m = torch.einsum("pa,abclxy->pbclxy", self.p_radial, m)  # (k³, K2, K3, L, D_in, D_out)
        m = torch.einsum("ob,pbclxy->poclxy", self.q_radial, m)
        h = torch.einsum("poil,ic->poilc", self.y_combined, self.q_radial)  # (k³, Q_o, Q_i, L, K3)
        m = m.permute(0, 1, 3, 2, 4, 5).reshape(*m.shape[:2], n_l * k3, -1)  # (k³, Q_o, L·K3, D_in·D_out)
        return (h.flatten(3) @ m).unflatten(-1, (self.irreps_in.dim, self.irreps_out.dim))

    def _per_l(self, m: Tensor) -> list[Tensor]:
        """Split filter rows per order l of the combined kernel: ``(K1·K2·K3·(2l+1), ...)`` each, m innermost."""
        blocks, start = [], 0
        units = self.n_radial_p * self.n_radial_q**2
        for l in range(self.lmax + 1):
            size = units * (2 * l + 1)
            block = m[start : start + size].reshape(units, 2 * l + 1, *m.shape[1:])
            blocks.append(block)
            start += size
        return blocks

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 6 or x.shape[1] != self.n_q or x.shape[-1] != self.irreps_in.dim:
            raise ValueError(f"expected (B, {self.n_q}, X, Y, Z, {self.irreps_in.dim}), got {tuple(x.shape)}")
        out = self._apply_kernel(x)
        if self.bias is None:
            return out
        return out + torch.zeros(self.irreps_out.dim, dtype=out.dtype, device=out.device).scatter(
            0, self.bias_index, self.bias
        )

    def _dense(self, x: Tensor) -> Tensor:
        b, q, nx, ny, nz, d_in = x.shape
        k = self.kernel_size
        weight = self.dense_kernel().permute(1, 4, 2, 3, 0).reshape(q * self.irreps_out.dim, q * d_in, k, k, k)
        out = nn.functional.conv3d(x.permute(0, 1, 5, 2, 3, 4).reshape(b, q * d_in, nx, ny, nz), weight, padding=k // 2)
        return out.reshape(b, q, self.irreps_out.dim, nx, ny, nz).permute(0, 1, 3, 4, 5, 2)

    def _stencils(self, x: Tensor) -> Tensor:
        """Fixed p-stencils P_a on every channel: ``(B, Q, X, Y, Z, D_in) -> (B, Q, D_in, D_p, X·Y·Z)``."""
        b, q, nx, ny, nz, d_in = x.shape
        k, d_p = self.kernel_size, self.p_basis.shape[1]
        channels = x.permute(0, 1, 5, 2, 3, 4).reshape(-1, 1, nx, ny, nz)
        u = nn.functional.conv3d(channels, self.p_basis.T.reshape(d_p, 1, k, k, k), padding=k // 2)
        return u.reshape(b, q, d_in, d_p, nx * ny * nz)

    def _weights(self) -> Tensor:
        """M_ab as ``(D_in·D_p, K2, K3, L_q, D_out)``, rows (c_in m_in, k1 l_p m_p)."""
        m_ab = torch.einsum("fab,fxy->xaby", self.coupling, self._filter_matrices())
        return m_ab.reshape(m_ab.shape[0] * m_ab.shape[1], *self.radial[1:], self.y_q.shape[-1], m_ab.shape[-1])

    def _pwq(self, x: Tensor) -> Tensor:
        b, q, nx, ny, nz, _ = x.shape
        d_out, voxels = self.irreps_out.dim, nx * ny * nz
        u = self._stencils(x).permute(1, 2, 3, 0, 4).reshape(q, -1, b * voxels)  # (Q_i, D_in·D_p, B·V)
        m = self._weights()  # (D_in·D_p, K2, K3, L, D_out)
        j = m.shape[1] * m.shape[3]
        per_sample = torch.einsum("ic,kbclx->iblxk", self.q_radial, m).reshape(q, j * d_out, -1)  # φ3(|q_i|) in
        t = torch.bmm(per_sample, u).reshape(q * j, d_out * b * voxels)  # rows (q_i, k2, l), columns (D_out, B·V)
        q_matrix = torch.einsum("ob,oil->oibl", self.q_radial, self.y_q).reshape(q, q * j)  # φ2(|q_o|) Y(Δq)
        out = (q_matrix @ t).reshape(q, d_out, b, nx, ny, nz)
        return out.permute(2, 0, 3, 4, 5, 1)

    def _pqw(self, x: Tensor) -> Tensor:
        b, q, nx, ny, nz, _ = x.shape
        d_out, voxels = self.irreps_out.dim, nx * ny * nz
        u = self._stencils(x).reshape(b, q, -1)  # (B, Q_i, D_in·D_p·V)
        _, k2s, k3s = self.radial
        q_matrix = torch.einsum("oil,ic->ocli", self.y_q, self.q_radial).reshape(-1, q)  # Y(Δq) φ3(|q_i|)
        s = (q_matrix @ u).reshape(b * q, -1, voxels)  # (B·Q_o, K3·L·D_in·D_p, V)
        m = self._weights()  # (D_in·D_p, K2, K3, L, D_out)
        m = m.permute(2, 3, 0, 1, 4).reshape(s.shape[1], k2s * d_out)
        out = (m.T @ s).reshape(b, q, k2s, d_out, voxels)
        out = torch.einsum("bqkxv,qk->bqvx", out, self.q_radial)  # φ2(|q_o|)
        return out.reshape(b, q, nx, ny, nz, d_out)

    def extra_repr(self) -> str:
        return (
            f"{self.irreps_in} -> {self.irreps_out}, Q={self.n_q}, kernel={self.kernel!r}, method={self.method!r}, "
            f"kernel_size={self.kernel_size}, lmax_p={self.lmax_p}, lmax_q={self.lmax_q}, radial={self.radial}"
        )
