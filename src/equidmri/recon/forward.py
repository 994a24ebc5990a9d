"""Forward model: fODFs -> diffusion signal through tissue response functions.

Multi-tissue spherical convolution (Elaldi et al., NeurIPS 2024, App. C.2; Tournier et al., NeuroImage
2004; Jeurissen et al., NeuroImage 2014):
``S^b(g) = sum_lm sqrt(4 pi / (2l + 1)) r_l0^b f_lm Y_lm(g) + sum_iso fraction_t R_t^b``, with f the WM fODF
(SH up to ``lmax`` 18, fitted to its values on the network grid) and R_t^b the isotropic responses.

How the tissue fractions are obtained (:data:`FRACTION_MODES`):

- ``"b0"``: the network outputs the WM fODF and the isotropic fractions, and all are rescaled so that the
  reconstructed b=0 signal equals the measured one (the SHD reference code's ``normalize``);
- ``"network"``: the network's outputs as they are;
- ``"nnls"``: the network outputs only the *shape* of the WM fODF; the fractions of WM (the fODF's integral)
  and of the isotropic tissues are the non-negative least-squares fit of the voxel's signal with that shape
  (variable projection: Golub & Pereyra, SIAM J. Numer. Anal. 1973; the linear part of a separable
  least-squares problem is solved exactly, the network learns the rest). With WM, GM and CSF, a flat WM
  fODF plus CSF mimics GM's decay over a few shells, so the fractions lie in a narrow valley of the loss
  that gradient training of the fractions crawled along (equidmri issue #23); solved per voxel, they are
  exact at every step.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import Tensor, nn

from equidmri.dmri.gradients import Shells
from equidmri.recon.config import FRACTION_MODES  # how the tissue fractions are obtained (module docstring)
from equidmri.sphere.sh import degrees, sh_fit_matrix, sh_matrix

FODF_LMAX = 18  # SH degree of the WM fODF (190 coefficients <= the 384 V+ pixels at nside 8)
FODF_SMOOTH = 1e-5  # Laplace-Beltrami weight of the grid -> SH fit: shrinks l = 18 by ~2% at nside 8
B0_EPS = 1e-6  # floor of the predicted b=0 signal when rescaling to the measured one (normalised units)
NNLS_RIDGE = 1e-12  # relative Tikhonov term of the per-voxel NNLS normal equations (keeps them invertible)
INTEGRAL_EPS = 1e-12  # floor of the fODF shape's integral when normalising it


def nnls(design: Tensor, signal: Tensor) -> Tensor:
    """Non-negative least squares for a few unknowns per voxel, batched and differentiable.

    ``argmin_w ||design @ w - signal||^2`` subject to ``w >= 0``, by enumerating the active sets: each of
    the ``2^T - 1`` subsets of unknowns is solved by its normal equations, and the feasible solution with
    the smallest residual is kept (the NNLS optimum is one of them; Lawson & Hanson, *Solving Least Squares
    Problems*, 1974, ch. 23). Meant for T <= 4 tissue fractions; the gradient is that of the chosen subset's
    least-squares solution. Solved in float64.

    Parameters
    ----------
    design : Tensor, shape ``(..., N, T)``
    signal : Tensor, shape ``(..., N)``

    Returns
    -------
    Tensor, shape ``(..., T)``, dtype of ``signal``
    """
    a, y = design.double(), signal.double()
    n_unknowns = a.shape[-1]
    gram = a.transpose(-1, -2) @ a
    eye = torch.eye(n_unknowns, dtype=a.dtype, device=a.device)
    gram = gram + NNLS_RIDGE * gram.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None] * eye
    rhs = (a.transpose(-1, -2) @ y[..., None])[..., 0]
    energy = y.square().sum(-1)
    best, best_residual = torch.zeros_like(rhs), energy  # w = 0: always feasible
    for size in range(1, n_unknowns + 1):
        for subset in itertools.combinations(range(n_unknowns), size):
            active = torch.zeros(n_unknowns, dtype=a.dtype, device=a.device)
            active[list(subset)] = 1.0
            # inactive unknowns get an identity row and a zero right-hand side: they solve to 0
            w = torch.linalg.solve(gram * (active[:, None] * active) + torch.diag(1 - active), rhs * active)
            residual = energy - 2 * (w * rhs).sum(-1) + (w[..., None, :] @ gram @ w[..., :, None])[..., 0, 0]
            better = (w >= 0).all(-1) & (residual < best_residual)
            best = torch.where(better[..., None], w, best)
            best_residual = torch.where(better, residual, best_residual)
    return best.to(signal.dtype)


def convolution_factors(zonal: np.ndarray, lmax: int) -> np.ndarray:
    """Per-coefficient multipliers ``sqrt(4 pi / (2l+1)) r_l0`` of a spherical convolution.

    Parameters
    ----------
    zonal : ndarray, shape ``(..., L)``
        Zonal coefficients r_l0 for l = 0, 2, ..., with ``L >= lmax // 2 + 1``.

    Returns
    -------
    ndarray, shape ``(..., K)``
        Multiplier of each SH coefficient (dipy/MRtrix order), K = (lmax+1)(lmax+2)/2.
    """
    l_of = degrees(lmax)
    return np.sqrt(4 * math.pi / (2 * l_of + 1)) * zonal[..., l_of // 2]


def wm_sh_operator(bvecs: np.ndarray, shells: Shells, zonal: np.ndarray, lmax: int) -> np.ndarray:
    """Signal of each volume from the WM fODF's SH coefficients: the WM spherical convolution as a matrix.

    Parameters
    ----------
    bvecs : ndarray, shape ``(N, 3)``
        Unit b-vectors (b=0 rows ignored).
    shells : Shells
        Shell of each volume.
    zonal : ndarray, shape ``(T, 1 + S, >= lmax // 2 + 1)``
        Response zonal coefficients, WM first, b=0 row first (``TissueResponses.zonal``).
    lmax : int
        Even SH degree of the fODF.

    Returns
    -------
    ndarray, shape ``(N, K)`` float64
        ``signal = operator @ fodf_sh`` (descoteaux07), normalised like ``zonal``.
    """
    row = shells.index + 1  # response row of each volume: 0 for b=0
    directions = np.where(shells.index[:, None] >= 0, bvecs, [0.0, 0.0, 1.0])
    return sh_matrix(directions, lmax, "descoteaux07") * convolution_factors(zonal[0, row], lmax)


def iso_operator(shells: Shells, zonal: np.ndarray) -> np.ndarray:
    """Signal ``(T - 1, N)`` of a unit fraction of each isotropic tissue at each volume (``R_t^b / s0_wm``)."""
    return zonal[1:, shells.index + 1, 0] / math.sqrt(4 * math.pi)


class SignalModel(nn.Module):
    """Reconstruct the DWI from a WM fODF on the grid and isotropic tissue fractions.

    Parameters
    ----------
    vertices : ndarray, shape ``(V, 3)``
        Grid directions on which the network outputs the WM fODF (voxel-axis frame).
    bvecs : ndarray, shape ``(N, 3)``
        Unit b-vectors of the reconstructed volumes (voxel-axis frame; b=0 rows ignored).
    shells : Shells
        Shell of each reconstructed volume.
    zonal : ndarray, shape ``(T, 1 + S, >= FODF_LMAX // 2 + 1)``
        Response zonal coefficients (``TissueResponses.zonal``), WM first, b=0 row first.
    fractions : {"b0", "network", "nnls"}
        How :meth:`complete` turns the network's outputs into the WM fODF and the isotropic fractions (module
        docstring). ``"b0"`` is the SHD reference code's ``normalize`` option (on by default there).

    Notes
    -----
    The map is linear; it is stored as two dense buffers: ``wm_operator (N, V)`` (grid values -> SH ->
    convolution -> signal) and ``iso_signal (T - 1, N)`` (signal of a unit fraction of each isotropic tissue).
    """

    def __init__(
        self, vertices: np.ndarray, bvecs: np.ndarray, shells: Shells, zonal: np.ndarray, fractions: str = "b0"
    ) -> None:
        super().__init__()
        if fractions not in FRACTION_MODES:
            raise ValueError(f"fractions must be one of {FRACTION_MODES}, got {fractions!r}")
        self.fractions = fractions
        bvecs = np.asarray(bvecs, dtype=np.float64)
        if bvecs.shape != (shells.index.size, 3):
            raise ValueError(f"bvecs must have shape ({shells.index.size}, 3), got {bvecs.shape}")
        if zonal.ndim != 3 or zonal.shape[1] != 1 + shells.bvals.size or zonal.shape[2] < FODF_LMAX // 2 + 1:
            raise ValueError(f"zonal must be (T, {1 + shells.bvals.size}, >= {FODF_LMAX // 2 + 1}), got {zonal.shape}")
        signal_sh = wm_sh_operator(bvecs, shells, zonal, FODF_LMAX)
        fit = sh_fit_matrix(vertices, FODF_LMAX, "descoteaux07", smooth=FODF_SMOOTH)  # (K, V) float64
        dtype = torch.get_default_dtype()
        self.register_buffer("wm_operator", torch.tensor(signal_sh @ fit, dtype=dtype), persistent=False)
        self.register_buffer("iso_signal", torch.tensor(iso_operator(shells, zonal), dtype=dtype), persistent=False)
        self.register_buffer("grid_to_sh", torch.tensor(fit, dtype=dtype), persistent=False)
        self.register_buffer("b0_index", torch.as_tensor(np.flatnonzero(shells.index < 0)), persistent=False)

    def b0_signal(self, fodf: Tensor, iso: Tensor) -> Tensor:
        """Reconstructed b=0 signal ``(...)`` of ``fodf (..., V)`` and ``iso (..., T-1)``: their total fraction."""
        return fodf @ self.wm_operator[self.b0_index[0]] + iso @ self.iso_signal[:, self.b0_index[0]]

    def complete(self, fodf: Tensor, iso: Tensor, b0: Tensor, signal: Tensor) -> tuple[Tensor, Tensor]:
        """The network's outputs -> WM fODF ``(..., V)`` and isotropic fractions ``(..., T-1)``, per ``fractions``.

        Parameters
        ----------
        fodf : Tensor, shape ``(..., V)``
            Network output on the grid, >= 0: the WM fODF, or its shape for ``"nnls"``.
        iso : Tensor, shape ``(..., T-1)`` (``(..., 0)`` for ``"nnls"``)
            Network's isotropic fractions (ignored by ``"nnls"``).
        b0 : Tensor, shape ``(...)``
            Measured mean b=0 signal, normalised (``"b0"``).
        signal : Tensor, shape ``(..., N)``
            Measured normalised DWI of this model's acquisition (``"nnls"``).
        """
        if self.fractions == "b0":
            scale = b0 / self.b0_signal(fodf, iso).clamp_min(B0_EPS)
            return fodf * scale[..., None], iso * scale[..., None]
        if self.fractions == "nnls":
            return self.fit_fractions(fodf, signal)
        return fodf, iso

    def fit_fractions(self, shape: Tensor, signal: Tensor) -> tuple[Tensor, Tensor]:
        """WM fODF and isotropic fractions that best explain ``signal`` given the fODF's ``shape`` (NNLS).

        Parameters
        ----------
        shape : Tensor, shape ``(..., V)``
            Non-negative WM fODF up to scale, on the grid.
        signal : Tensor, shape ``(..., N)``
            Normalised DWI (by the WM b=0 response).

        Returns
        -------
        fodf : Tensor, shape ``(..., V)``
            ``shape`` scaled to its fitted WM fraction (its integral).
        iso : Tensor, shape ``(..., T-1)``
            Fitted isotropic fractions, >= 0.
        """
        integral = (shape @ self.grid_to_sh[0]) * math.sqrt(4 * math.pi)
        unit = shape / integral.clamp_min(INTEGRAL_EPS)[..., None]  # fODF of unit WM fraction
        wm_signal = unit @ self.wm_operator.T
        design = torch.cat([wm_signal[..., None], self.iso_signal.T.expand(*wm_signal.shape, -1)], dim=-1)
        weights = nnls(design, signal)
        return unit * weights[..., :1], weights[..., 1:]

    def forward(self, fodf: Tensor, iso: Tensor) -> Tensor:
        """``fodf (..., V)`` on the grid and ``iso (..., T-1)`` fractions -> signal ``(..., N)``."""
        return fodf @ self.wm_operator.T + iso @ self.iso_signal

    def fodf_sh(self, fodf: Tensor) -> Tensor:
        """Grid values ``(..., V)`` -> descoteaux07 SH coefficients ``(..., 190)`` (lmax 18)."""
        return fodf @ self.grid_to_sh.T
