"""Per-voxel refinement of a network's fODFs under the deconvolution loss (semi-amortised inference).

The network gives every voxel's WM fODF and tissue fractions in one pass (amortised inference). On real data
its answer is not the minimum of its own loss for that voxel: on the MRtrix3 multi-shell test volume
(equidmri issue #23) the network's fODFs agreed with MSMT-CSD in 87 % of the WM voxels (median 8.5°) and found
a third of its crossings, while the per-voxel minimum of the same loss, at the SH degree 8 of the output,
reached 93 %, 3° and 93 %. :class:`FODFRefiner` closes that amortisation gap: starting from the network's
output, a few Adam steps minimise, voxel by voxel, the reconstruction error through the tissue responses
plus the non-negativity penalty of SHD eq. 4 (weighted more, see :data:`REFINE_NN`; the Cauchy sparsity penalty
is available but off by default, see :data:`REFINE_SPARSITY`), over the WM fODF's SH coefficients up to ``lmax``
and the isotropic fractions (kept >= 0 through a softplus). With the WM as the only tissue the b=0 volumes are
left out of the fit (they carry no orientation), as dipy's CSD leaves them out. The TV term of SHD-TV, which
couples neighbours, is added by default with the WM alone, its weight scaled to the number of fitted volumes
(:meth:`FODFRefiner.default_tv`); with it, :meth:`FODFRefiner.refine_volume` refines every voxel of the mask
together. The two products with the penalty directions' SH basis, two thirds of a step's work, run in bfloat16
where the CPU multiplies it natively (``precision``, :func:`equidmri.runtime.product_dtype`); the data term's stay
float32 (the residual is a small difference of large terms).

References
----------
Elaldi, Gerig & Dey, NeurIPS 2024, eq. 4 (the loss). Kim, Wiseman, Miller, Sontag & Rush, "Semi-amortized
variational autoencoders", ICML 2018 (refining an amortised answer per sample by gradient steps on its loss).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from dipy.core.sphere import HemiSphere
from dipy.data import get_sphere
from torch import Tensor, nn

from equidmri.dmri.gradients import Shells
from equidmri.recon.config import REFINE_TV, REFINE_TV_VOLUMES
from equidmri.recon.forward import iso_operator, wm_sh_operator
from equidmri.recon.losses import NORM_EPS, SPARSITY_SIGMA, cauchy_sparsity, negativity
from equidmri.runtime import matmul, on_threads, product_dtype
from equidmri.sphere.sh import n_coeffs, sh_matrix

__all__ = ["REFINE_LMAX", "REFINE_LR", "REFINE_NN", "REFINE_SPHERE", "REFINE_SPARSITY", "FODFRefiner", "scaled_tv"]

REFINE_LMAX = 8  # SH degree of the refined fODF: that of fod.nii.gz and of the peaks (lmax 18: 90 % vs 93 % above)
# dipy sphere whose hemisphere carries the penalties: 181 directions. Development runs (validation phantoms of
# another seed than bench pretrained's, small_64D, the MRtrix3 msmt volume), against the HEALPix nside-8
# hemisphere (384) used before: F1 0.844 / 0.882 at 29 / 90 directions (384: 0.844 / 0.883), small_64D 97.3 %
# of main peaks within 25 deg of CSD (97.3 %), msmt 95.8 % (96.0 %), crossings 97.2 % (96.9 %); 0.68x the time
# (2 cores: 43 -> 30 us per voxel). repulsion200 (100 directions): msmt 95.1 %; HEALPix nside 4 (96): 92.3 %
REFINE_SPHERE = "symmetric362"
REFINE_LR = 1e-2  # Adam learning rate of the refinement (SH coefficients of the b0-normalised fODF per step)
# Weight of the non-negativity penalty in the refinement. The network's fODF is non-negative on its grid by
# construction (softplus), so in training lambda_nn 0.1 only polices the SH fit's ripples; in SH space it is the
# only non-negativity there is. With 0.1 the refined fODFs of small_64D had 0.25 of their positive mass in
# negative lobes (dipy CSD: 0.057); with 1.0, 0.079, and agreement with CSD rose (93.3 % -> 98.0 % of main peaks
# within 25 deg) as it did on the MRtrix3 multi-shell volume (93.7 % -> 94.0 %; crossings 93.1 % -> 92.9 %); all
# with the sparsity weight 5e-5 of the time (without it, below: 0.092 of the mass in negative lobes on small_64D)
REFINE_NN = 1.0
# Weight of the Cauchy sparsity penalty in the refinement: 0. The training loss's 5e-5 pushed small lobes apart
# into extra peaks; without it (development runs on validation phantoms of another seed than bench pretrained's,
# small_64D and the MRtrix3 msmt volume) main peaks matched msmt_csd's in 96.0 % instead of 94.0 % (crossings
# 96.9 % vs 92.9 %), the phantoms' F1 at 90 directions 0.883 vs 0.880 (angle 4.84 vs 4.90 deg), at 29 0.844 vs
# 0.844 (6.01 vs 6.10 deg), small_64D 97.3 % vs 98.0 % of main peaks within 25 deg of CSD; 2e-4 and 1e-3 lost on all
REFINE_SPARSITY = 0.0
MIN_FRACTION = 1e-4  # floor of the initial isotropic fractions (the softplus parameters stay finite)
# Most voxels refined together, in a number of chunks that is a multiple of torch's threads (an equal share each).
# Measured on 2 cores, 181 penalty directions, the per-voxel refinement of a 100x100x60 brain-shaped mask in tiles
# of 9000 voxels, 100 steps (medians of 3): 8192 -> 18.1 s, 2048 -> 14.3 s, 1024 -> 16.1 s; a chunk's buffers
# (about 3 KB per voxel) then stay near the core's 2 MiB L2 cache from step to step
CHUNK = 2048
# Adam steps taken with the neighbours' unit fODFs of the block's start (the spatial term, refine_volume): every
# step the whole mask's fODFs go through memory, every TV_BLOCK steps a chunk's buffers stay in cache instead.
# Measured on 2 cores, the 100x100x60 mask at once, 100 steps: 1 (lockstep) 24.3 s, 5 -> 19.8 s (without the
# term 16.9 s); validation phantoms of another seed (24^3, W 3e-5): 29 directions 5.52 / 5.54 deg, F1 0.862 /
# 0.861; 90 directions 3.95 / 3.97 deg, 0.896 / 0.896 (10: 5.56 deg; 25: 5.63 deg)
TV_BLOCK = 5
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults


def scaled_tv(fitted: int) -> float:
    """The spatial term's weight for ``fitted`` volumes per voxel: :data:`~equidmri.recon.config.REFINE_TV` x
    :data:`~equidmri.recon.config.REFINE_TV_VOLUMES` / ``fitted``, to 3 significant digits (the default with the WM
    alone, :meth:`FODFRefiner.default_tv`)."""
    return float(f"{REFINE_TV * REFINE_TV_VOLUMES / fitted:.3g}")


class FODFRefiner(nn.Module):
    """Minimise the SHD loss voxel by voxel (without TV; with it, :meth:`refine_volume`), starting from the network's
    fODF and fractions.

    Parameters
    ----------
    bvecs : ndarray, shape ``(N, 3)``
        Unit b-vectors of the signal (voxel-axis frame; b=0 rows ignored).
    shells : Shells
        Shell of each volume. The volumes fitted (:attr:`fitted_volumes`) are all of them, or with the WM as the
        only tissue the DW ones alone.
    zonal : ndarray, shape ``(T, 1 + S, >= lmax // 2 + 1)``
        Response zonal coefficients (``TissueResponses.zonal``), WM first.
    lmax : int
        Even SH degree of the refined fODF.
    nonnegativity : float
        Weight of the non-negativity penalty (:data:`REFINE_NN`).
    sparsity : float
        Weight of the Cauchy sparsity penalty (:data:`REFINE_SPARSITY`; the training loss uses
        ``LossWeights.sparsity``).
    sphere : str
        dipy sphere (``dipy.data.get_sphere``) on whose hemisphere the penalties are evaluated: the fODF (even
        degrees) is antipodally symmetric, so the hemisphere gives the full sphere's means at half the cost.
    """

    def __init__(
        self,
        bvecs,
        shells: Shells,
        zonal,
        lmax: int = REFINE_LMAX,
        sphere: str = REFINE_SPHERE,
        nonnegativity: float = REFINE_NN,
        sparsity: float = REFINE_SPARSITY,
    ) -> None:
        super().__init__()
        dtype = torch.get_default_dtype()
        self.lmax, self.nonnegativity, self.sparsity = lmax, nonnegativity, sparsity
        # With the WM alone the b=0 volumes are not fitted. They carry no orientation, and a WM-only model cannot
        # reconcile a voxel's b=0 with its free-water partial volume: to explain a high b=0 and a low DW signal at
        # once the fODF bends (dipy's CSD fits the DW volumes alone). Development runs, all b=0 volumes fitted ->
        # none: MRtrix3's msmt volume, its b=2800 shell read at 29 of its 50 directions (4 draws), main peaks within
        # 25 deg of MRtrix3's MSMT-CSD on all the data 75.6 -> 84.5 % (dipy CSD lmax 6 on the same subsets 86.4 %),
        # crossings found 71.9 -> 82.0 % (78.8 %); its b=1200 shell at 29 of 30, 78.6 -> 81.5 % (82.0 %); validation
        # phantoms of another seed than bench pretrained's, 24^3, angular error 6.53 -> 6.48 deg at 29 directions,
        # 4.53 -> 4.50 deg at 90; small_64D read at 29 of 64 unchanged (83.1 %). With isotropic tissues the b=0
        # volumes are what tells them apart, and stay in the fit
        fitted = shells.index >= 0 if len(zonal) == 1 else np.ones(shells.index.size, bool)
        wm_operator, iso_signal = wm_sh_operator(bvecs, shells, zonal, lmax), iso_operator(shells, zonal)
        self.register_buffer("fitted_volumes", torch.from_numpy(np.flatnonzero(fitted)), persistent=False)
        self.register_buffer("wm_operator", torch.tensor(wm_operator[fitted], dtype=dtype), persistent=False)
        self.register_buffer("iso_signal", torch.tensor(iso_signal[:, fitted], dtype=dtype), persistent=False)
        basis = sh_matrix(HemiSphere.from_sphere(get_sphere(name=sphere)).vertices, lmax, "descoteaux07")
        self.register_buffer("basis", torch.tensor(basis, dtype=dtype), persistent=False)

    def fitted(self, signal: Tensor) -> Tensor:
        """The columns of ``signal (m, N)`` that the loss fits, ``(m, F)`` (:attr:`fitted_volumes`; a new tensor)."""
        return signal.index_select(-1, self.fitted_volumes)

    def default_tv(self) -> tuple[float, str]:
        """The weight of the spatial term by default, and why. With the WM alone (single-shell scans):
        :data:`~equidmri.recon.config.REFINE_TV` scaled by :data:`~equidmri.recon.config.REFINE_TV_VOLUMES` / F
        for a voxel's F fitted volumes (3 significant digits); with GM and CSF (multi-shell scans) as before
        ``3ad2dfe``: :data:`~equidmri.recon.config.REFINE_TV` where the fit is underdetermined (fewer fitted volumes
        than the SH coefficients up to :attr:`lmax` and the fractions), else 0.

        The data term of :meth:`loss` is a mean over the F fitted volumes; against their sum of squares (MAP with
        Gaussian noise) SHD-TV's spatial prior (Elaldi et al., NeurIPS 2024, eq. 4) then keeps one strength at
        every angular resolution: 3e-5 at 29 directions, 9.7e-6 at 90. On bench pretrained's single-shell
        phantoms it lowers the angular error and raises F1 at 29, 45 and 90 directions. With GM and CSF the same
        rule gave mixed results on the multi-shell phantoms (F1 lower at 30 directions per shell) and moved real
        peaks and crossings away from MSMT-CSD's, so there the term stays where the data cannot pin the fODF down
        (docs/pretrained_model.md, "The spatial term at every angular resolution").
        """
        fitted = len(self.fitted_volumes)
        if self.iso_signal.shape[0]:  # GM and CSF: the rule before 3ad2dfe
            unknowns = n_coeffs(self.lmax) + self.iso_signal.shape[0]
            if fitted < unknowns:
                return (
                    REFINE_TV,
                    f"{fitted} fitted volumes < {unknowns} unknowns (GM and CSF): spatial term {REFINE_TV:g}",
                )
            return 0.0, f"{fitted} fitted volumes >= {unknowns} unknowns (GM and CSF): per voxel"
        weight = scaled_tv(fitted)
        return weight, (
            f"{fitted} fitted volumes: spatial term {REFINE_TV:g} x {REFINE_TV_VOLUMES} / {fitted} = {weight:g}"
        )

    def loss(self, fodf_sh: Tensor, iso: Tensor, signal: Tensor) -> Tensor:
        """Sum over voxels of each voxel's loss (so voxels do not interact and chunks give the same result).

        ``fodf_sh (m, K)`` up to :attr:`lmax`, ``iso (m, T-1)`` >= 0, ``signal (m, F)`` the fitted volumes
        (:meth:`fitted`) normalised by the WM b=0 response.
        """
        reconstruction = fodf_sh @ self.wm_operator.T + iso @ self.iso_signal
        values = fodf_sh @ self.basis.T
        per_voxel = (
            (reconstruction - signal).square().mean(-1)
            + self.nonnegativity * negativity(values).mean(-1)
            + self.sparsity * cauchy_sparsity(values).mean(-1)
        )
        return per_voxel.sum()

    def gradient(
        self, fodf_sh: Tensor, raw: Tensor, signal: Tensor, work: _Workspace | None = None
    ) -> tuple[Tensor, Tensor]:
        """Analytic gradient of :meth:`loss` with respect to ``fodf_sh (m, K)`` and the softplus parameters ``raw``
        of the isotropic fractions ``(m, T-1)`` (written out: autograd took 5x as long on these small matrices).

        With ``r`` the residual of the fitted signal ``(m, F)`` (:meth:`fitted`) and ``v = fodf_sh B^T`` the fODF on
        the ``P`` penalty directions: ``dL/dfodf_sh = (2/F) r W + c_nn (min(v, 0) + (c_s / c_nn) v / (2 sigma + v^2))
        B`` with ``c_nn = 2 nn / P`` and ``c_s = 4 sparsity / P``, and ``dL/draw = (2/F) r I^T sigmoid(raw)``. ``work``
        holds buffers reused from step to step (:meth:`_workspace`; fresh ones when ``None``); the returned
        ``dL/dfodf_sh`` is one of them. The products with ``B`` and the penalties' derivatives are computed in the
        dtype of ``work.basis`` (``fodf_sh``'s without ``work``), the rest in ``fodf_sh``'s.
        """
        wm, iso_signal = self.wm_operator, self.iso_signal
        work = self._workspace(len(signal), fodf_sh) if work is None else work
        basis = work.basis
        n, p = wm.shape[0], basis.shape[0]
        low = basis.dtype != fodf_sh.dtype  # the penalty products in a lower precision (bfloat16)
        residual = matmul(fodf_sh, wm.T, out=work.residual).sub_(signal)
        if len(iso_signal):
            residual.add_(nn.functional.softplus(raw) @ iso_signal)
        matmul(work.coeffs.copy_(fodf_sh) if low else fodf_sh, basis.T, out=work.values)
        c_nn, c_s = 2 * self.nonnegativity / p, 4 * self.sparsity / p
        penalty = torch.clamp(work.values, max=0, out=work.penalty)  # d(non-negativity)/dv, up to c_nn
        if c_s:  # d(sparsity)/dv = c_s v / (2 sigma + v^2)
            torch.mul(work.values, work.values, out=work.scratch).add_(2 * SPARSITY_SIGMA)
            if c_nn:
                penalty.addcdiv_(work.values, work.scratch, value=c_s / c_nn)
            else:
                penalty, c_nn = torch.div(work.values, work.scratch, out=work.penalty), c_s
        penalty_sh = matmul(penalty, basis, out=work.penalty_sh if low else work.grad_sh)
        grad_sh = (work.grad_sh.copy_(penalty_sh) if low else penalty_sh).mul_(c_nn)
        grad_sh.add_(matmul(residual, wm, out=work.fit), alpha=2 / n)
        grad_raw = (residual @ iso_signal.T).mul_(torch.sigmoid(raw)).mul_(2 / n)
        return grad_sh, grad_raw

    def _workspace(self, m: int, like: Tensor, dtype: torch.dtype | None = None) -> _Workspace:
        """Buffers of :meth:`gradient` for ``m`` voxels (allocated once per chunk, not per step), the penalty
        products' in ``dtype`` (default ``like``'s)."""
        p, (n, k) = self.basis.shape[0], self.wm_operator.shape
        dtype = like.dtype if dtype is None else dtype
        low = dtype != like.dtype
        return _Workspace(
            self.basis.to(dtype),
            *(like.new_empty(shape, dtype=dtype) for shape in ((m if low else 0, k), (m, p), (m, p), (m, p))),
            like.new_empty(m if low else 0, k, dtype=dtype),
            *(like.new_empty(shape) for shape in ((m, n), (m, k), (m, k))),
        )

    def forward(
        self,
        fodf_sh: Tensor,
        iso: Tensor,
        signal: Tensor,
        steps: int,
        lr: float = REFINE_LR,
        precision: str = "auto",
    ) -> tuple[Tensor, Tensor]:
        """Refine ``steps`` Adam steps from the network's answer, at most :data:`CHUNK` voxels at a time.

        On a CPU the voxels are shared out in equal chunks over torch's threads, each running its own chunk
        single-threaded (:func:`equidmri.runtime.on_threads`).

        Parameters
        ----------
        fodf_sh : Tensor, shape ``(m, K0)``
            The network's WM fODF, descoteaux07 SH of degree >= :attr:`lmax` (truncated to it).
        iso : Tensor, shape ``(m, T-1)``
            Its isotropic fractions (``(m, 0)`` with WM alone).
        signal : Tensor, shape ``(m, N)``
            Measured DWI, normalised by the WM b=0 response.
        steps : int
            Adam steps (0 returns the truncated input).
        lr : float
            Adam's learning rate.
        precision : str
            Of the products with the penalty directions' basis (:func:`equidmri.runtime.product_dtype`: ``"auto"``
            is bfloat16 on a CPU that multiplies it natively, else float32; ``"float32"``, ``"bfloat16"``).

        Returns
        -------
        fodf_sh : Tensor, shape ``(m, K)``, K = (lmax + 1)(lmax + 2) / 2
        iso : Tensor, shape ``(m, T-1)``, >= 0
        """
        k = n_coeffs(self.lmax)
        if fodf_sh.shape[-1] < k:
            raise ValueError(f"fodf_sh has {fodf_sh.shape[-1]} SH coefficients, fewer than lmax {self.lmax} needs")
        if not steps:
            return fodf_sh[:, :k].clone(), iso.clone()

        threads = torch.get_num_threads() if signal.device.type == "cpu" else 1
        size, dtype = _chunk_size(len(signal), threads), product_dtype(precision, signal.device)

        def refine(i: int) -> tuple[Tensor, Tensor]:
            # normal tensors are cloned out of inference tensors (tiled inference runs under inference_mode)
            with torch.inference_mode(False), torch.no_grad():
                chunk = slice(i, i + size)
                start = fodf_sh[chunk, :k].clone(memory_format=torch.contiguous_format)  # C order: _AdamState
                fractions = iso[chunk].clone()
                return self._adam(start, fractions, self.fitted(signal[chunk]), steps, lr, dtype)

        starts = range(0, len(signal), size)
        chunks = on_threads(refine, starts) if signal.device.type == "cpu" else [refine(i) for i in starts]
        return torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks])

    def _adam(
        self, fodf_sh: Tensor, iso: Tensor, signal: Tensor, steps: int, lr: float, dtype: torch.dtype
    ) -> tuple[Tensor, Tensor]:
        """:class:`_AdamState` steps on ``fodf_sh`` and ``iso``'s softplus parameters with :meth:`gradient` (its
        penalty products in ``dtype``)."""
        state = _AdamState.start(fodf_sh, iso)
        work = self._workspace(len(signal), fodf_sh, dtype)
        for step in range(1, steps + 1):
            state.update(self.gradient(fodf_sh, state.raw, signal, work), step, lr)
        return fodf_sh, nn.functional.softplus(state.raw)

    def refine_volume(
        self,
        fodf_sh: Tensor,
        iso: Tensor,
        signal: Tensor,
        mask,
        steps: int,
        tv: float,
        lr: float = REFINE_LR,
        precision: str = "auto",
    ) -> tuple[Tensor, Tensor]:
        """Refine every voxel of ``mask`` together under the loss plus ``tv`` times the spatial term.

        The spatial term is ``sum over face-neighbour pairs (i, j) in the mask of |u_i - u_j|^2`` with ``u = c / |c|``
        the L2-normalised SH coefficients of the WM fODF (the normalised fODFs' squared difference on the sphere,
        by Parseval; SHD-TV's TV term, :func:`equidmri.recon.losses.total_variation`, in SH space). Its gradient,
        ``dT/dc_i = 2 (I - u_i u_i^T) sum_j (u_i - u_j) / |c_i| = -2 (I - u_i u_i^T) sum_j u_j / |c_i|``, is added
        to :meth:`gradient`'s, with the neighbours' ``u_j`` of the start of each block of :data:`TV_BLOCK` steps
        (lockstep Adam on the joint loss with 1; each voxel's own ``u_i`` is always its current one). ``tv`` 0 is
        :meth:`forward`.

        Parameters
        ----------
        fodf_sh, iso, signal : Tensor
            As :meth:`forward`, at the voxels of ``mask`` in C order (``mask.nonzero()``).
        mask : ndarray, shape ``(X, Y, Z)`` bool
        steps : int
        tv : float
            Weight of the spatial term (>= 0).
        lr, precision

        Returns
        -------
        As :meth:`forward`.

        Raises
        ------
        ValueError
            If ``tv`` is negative, the rows do not match the mask's voxels or ``precision`` is unknown.
        """
        if not tv >= 0:
            raise ValueError(f"the TV weight must be >= 0, got {tv}")
        if len(signal) != int(mask.sum()):
            raise ValueError(f"{len(signal)} voxels of signal for a mask of {int(mask.sum())}")
        if not tv or not steps:
            return self(fodf_sh, iso, signal, steps, lr, precision)
        k = n_coeffs(self.lmax)
        with torch.inference_mode(False), torch.no_grad():
            fodf_sh = fodf_sh[:, :k].clone(memory_format=torch.contiguous_format)  # C order: _AdamState
            iso, signal = iso.clone(), self.fitted(signal)
            neighbours = _neighbours(mask).to(fodf_sh.device)
            state = _AdamState.start(fodf_sh, iso)
            threads = torch.get_num_threads() if signal.device.type == "cpu" else 1
            size, dtype = _chunk_size(len(signal), threads), product_dtype(precision, signal.device)
            chunks = [slice(i, min(i + size, len(signal))) for i in range(0, len(signal), size)]
            n_workers = min(threads, len(chunks))
            works = [self._workspace(size, fodf_sh, dtype) for _ in range(n_workers)]
            norms = [fodf_sh.new_empty(size, 1) for _ in range(n_workers)]
            unit = fodf_sh.new_zeros(len(signal) + 1, k)  # at the block's start; the last row: no neighbour (zero)
            around = fodf_sh.new_empty(len(signal), k)  # sum of each voxel's neighbours' unit fODFs, over the block

            def normalise(t: int) -> None:
                for chunk in chunks[t::n_workers]:
                    norm = torch.linalg.vector_norm(
                        fodf_sh[chunk], dim=1, keepdim=True, out=norms[t][: chunk.stop - chunk.start]
                    )
                    torch.div(fodf_sh[chunk], norm.add_(NORM_EPS), out=unit[chunk])

            def sum_neighbours(t: int) -> None:
                for chunk in chunks[t::n_workers]:
                    total = around[chunk].zero_()
                    for direction in neighbours:
                        total.add_(unit.index_select(0, direction[chunk]))

            def take_steps(t: int, first: int, last: int) -> None:
                for chunk in chunks[t::n_workers]:
                    m = chunk.stop - chunk.start
                    c, a, norm, work = fodf_sh[chunk], around[chunk], norms[t][:m], works[t].rows(m)
                    for step in range(first, last + 1):
                        # dT/dc = -2 (I - u u^T) a / |c| with u = c / |c| (the own term cancels: (I - u u^T) u = 0)
                        torch.linalg.vector_norm(c, dim=1, keepdim=True, out=norm).add_(NORM_EPS)
                        along = torch.linalg.vecdot(c, a).unsqueeze_(1).div_(norm.pow(3))
                        grad_sh, grad_raw = self.gradient(c, state.raw[chunk], signal[chunk], work)
                        grad_sh.addcmul_(c, along, value=2 * tv).addcdiv_(a, norm, value=-2 * tv)
                        state.update((grad_sh, grad_raw), step, lr, chunk)

            for first in range(1, steps + 1, TV_BLOCK):
                on_threads(normalise, range(n_workers))
                on_threads(sum_neighbours, range(n_workers))
                on_threads(
                    lambda t, first=first: take_steps(t, first, min(first + TV_BLOCK - 1, steps)), range(n_workers)
                )
            return fodf_sh, nn.functional.softplus(state.raw)


def _chunk_size(m: int, threads: int) -> int:
    """Voxels per chunk: at most :data:`CHUNK`, in a number of chunks that is a multiple of ``threads`` (an equal
    share of the ``m`` voxels per thread)."""
    chunks = threads * math.ceil(m / (CHUNK * threads))
    return max(1, math.ceil(m / chunks))


def _neighbours(mask) -> Tensor:
    """Face neighbours among the ``M`` voxels of ``mask`` (C order): ``(6, M)`` row of each voxel's neighbour in
    each direction, ``M`` where it has none (outside the mask or the volume)."""
    n = int(mask.sum())
    index = np.full(np.add(mask.shape, 2), n, dtype=np.int64)  # padded: the border has no neighbour
    index[1:-1, 1:-1, 1:-1][mask] = np.arange(n)
    rows = [np.roll(index, shift, axis=axis)[1:-1, 1:-1, 1:-1][mask] for axis in range(3) for shift in (-1, 1)]
    return torch.from_numpy(np.stack(rows))


class _AdamState:
    """Adam (Kingma & Ba 2015, torch.optim.Adam's defaults) on the SH coefficients and the softplus parameters
    ``raw`` of the isotropic fractions, in place, with given gradients, by blocks of rows.

    A step is torch's fused Adam kernel (``torch._fused_adam_``, what ``torch.optim.Adam(fused=True)`` runs): on one
    thread of the benchmarks' AMD EPYC, 23 ns per voxel for ``(2048, 45)`` coefficients against 68-107 for the
    update written out in torch ops before. ``torch.optim.Adam`` itself is not used: its first step imports
    ``torch._dynamo``, 1.1 s. The kernel pairs a parameter's elements with its gradient's in memory order (in torch
    2.13 a column-major parameter with a C-order gradient got its elements' steps swapped; the network's fractions
    come column-major), so the parameters are held in C order.
    """

    def __init__(self, fodf_sh: Tensor, raw: Tensor) -> None:
        if not (fodf_sh.is_contiguous() and raw.is_contiguous()):
            raise ValueError("the parameters of _AdamState must be in C order (contiguous)")
        self.params = (fodf_sh, raw)
        self.first = [torch.zeros_like(p) for p in self.params]
        self.second = [torch.zeros_like(p) for p in self.params]

    @property
    def raw(self) -> Tensor:
        """The softplus parameters of the isotropic fractions (updated in place)."""
        return self.params[1]

    @classmethod
    def start(cls, fodf_sh: Tensor, iso: Tensor) -> _AdamState:
        """From the fODF's coefficients (updated in place) and the isotropic fractions (floored at
        :data:`MIN_FRACTION`)."""
        return cls(fodf_sh, torch.log(torch.expm1(iso.clamp_min(MIN_FRACTION))).contiguous())

    def update(self, grads: tuple[Tensor, Tensor], step: int, lr: float, rows: slice = slice(None)) -> None:
        """The ``step``-th Adam step (from 1) of the parameters' ``rows`` (all by default) with their gradients."""
        torch._fused_adam_(
            [p[rows] for p in self.params],
            [g.contiguous() for g in grads],
            [m[rows] for m in self.first],
            [v[rows] for v in self.second],
            [],
            [torch.full((), float(step), device=p.device) for p in self.params],
            lr=lr,
            beta1=ADAM_BETAS[0],
            beta2=ADAM_BETAS[1],
            weight_decay=0.0,
            eps=ADAM_EPS,
            amsgrad=False,
            maximize=False,
        )


class _Workspace(NamedTuple):
    """Buffers of :meth:`FODFRefiner.gradient` for ``m`` voxels, those of the penalty products in their dtype."""

    basis: Tensor  # (P, K): the penalty directions' SH basis, in the products' dtype
    coeffs: Tensor  # (m, K): the fODF's SH coefficients in that dtype ((0, K) where it is theirs)
    values: Tensor  # (m, P): the fODF on the penalty directions, that dtype
    scratch: Tensor  # (m, P), that dtype
    penalty: Tensor  # (m, P): d(penalties)/d(values), up to a factor, that dtype
    penalty_sh: Tensor  # (m, K): penalty @ basis in that dtype ((0, K) where grad_sh holds it)
    residual: Tensor  # (m, N)
    grad_sh: Tensor  # (m, K)
    fit: Tensor  # (m, K): the reconstruction term's part of grad_sh

    def rows(self, m: int) -> _Workspace:
        """The buffers of the first ``m`` voxels (views)."""
        return _Workspace(self.basis, *(w[:m] for w in self[1:]))
