"""Forward model: fODFs -> diffusion signal through tissue response functions.

Multi-tissue spherical convolution (Elaldi et al., NeurIPS 2024, App. C.2; Tournier et al., NeuroImage
2004; Jeurissen et al., NeuroImage 2014):
``S^b(g) = sum_lm sqrt(4 pi / (2l + 1)) r_l0^b f_lm Y_lm(g) + sum_iso fraction_t R_t^b``, with f the WM fODF
(SH up to ``lmax`` 18, fitted to its values on the network grid) and R_t^b the isotropic responses.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from equidmri.dmri.gradients import Shells
from equidmri.sphere.sh import degrees, sh_fit_matrix, sh_matrix

FODF_LMAX = 18  # SH degree of the WM fODF (190 coefficients <= the 384 V+ pixels at nside 8)
FODF_SMOOTH = 1e-5  # Laplace-Beltrami weight of the grid -> SH fit: shrinks l = 18 by ~2% at nside 8
B0_EPS = 1e-6  # floor of the predicted b=0 signal when rescaling to the measured one (normalised units)


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
    match_b0 : bool
        If True, :meth:`rescale` scales all tissue outputs so that the reconstructed b=0 signal equals
        the measured one (the SHD reference code's ``normalize`` option, on by default there): the
        network then only has to learn the shape of the fODF, not each voxel's intensity.

    Notes
    -----
    The map is linear; it is stored as two dense buffers: ``wm_operator (N, V)`` (grid values -> SH ->
    convolution -> signal) and ``iso_signal (T - 1, N)`` (signal of a unit fraction of each isotropic tissue).
    """

    def __init__(
        self, vertices: np.ndarray, bvecs: np.ndarray, shells: Shells, zonal: np.ndarray, match_b0: bool = True
    ) -> None:
        super().__init__()
        self.match_b0 = match_b0
        bvecs = np.asarray(bvecs, dtype=np.float64)
        if bvecs.shape != (shells.index.size, 3):
            raise ValueError(f"bvecs must have shape ({shells.index.size}, 3), got {bvecs.shape}")
        if zonal.ndim != 3 or zonal.shape[1] != 1 + shells.bvals.size or zonal.shape[2] < FODF_LMAX // 2 + 1:
            raise ValueError(f"zonal must be (T, {1 + shells.bvals.size}, >= {FODF_LMAX // 2 + 1}), got {zonal.shape}")
        row = shells.index + 1  # response row of each volume: 0 for b=0
        directions = np.where(shells.index[:, None] >= 0, bvecs, [0.0, 0.0, 1.0])
        signal_sh = sh_matrix(directions, FODF_LMAX, "descoteaux07") * convolution_factors(zonal[0, row], FODF_LMAX)
        fit = sh_fit_matrix(vertices, FODF_LMAX, "descoteaux07", smooth=FODF_SMOOTH)  # (K, V) float64
        dtype = torch.get_default_dtype()
        self.register_buffer("wm_operator", torch.tensor(signal_sh @ fit, dtype=dtype), persistent=False)
        iso = zonal[1:, row, 0] / math.sqrt(4 * math.pi)  # (T-1, N): R_t^b / s0_wm for a unit fraction
        self.register_buffer("iso_signal", torch.tensor(iso, dtype=dtype), persistent=False)
        self.register_buffer("grid_to_sh", torch.tensor(fit, dtype=dtype), persistent=False)
        self.register_buffer("b0_index", torch.as_tensor(np.flatnonzero(shells.index < 0)), persistent=False)

    def b0_signal(self, fodf: Tensor, iso: Tensor) -> Tensor:
        """Reconstructed b=0 signal ``(...)`` of ``fodf (..., V)`` and ``iso (..., T-1)``: their total fraction."""
        return fodf @ self.wm_operator[self.b0_index[0]] + iso @ self.iso_signal[:, self.b0_index[0]]

    def rescale(self, fodf: Tensor, iso: Tensor, b0: Tensor) -> tuple[Tensor, Tensor]:
        """Scale ``fodf`` and ``iso`` so the reconstructed b=0 equals ``b0 (...)`` (identity if not ``match_b0``)."""
        if not self.match_b0:
            return fodf, iso
        scale = b0 / self.b0_signal(fodf, iso).clamp_min(B0_EPS)
        return fodf * scale[..., None], iso * scale[..., None]

    def forward(self, fodf: Tensor, iso: Tensor) -> Tensor:
        """``fodf (..., V)`` on the grid and ``iso (..., T-1)`` fractions -> signal ``(..., N)``."""
        return fodf @ self.wm_operator.T + iso @ self.iso_signal

    def fodf_sh(self, fodf: Tensor) -> Tensor:
        """Grid values ``(..., V)`` -> descoteaux07 SH coefficients ``(..., 190)`` (lmax 18)."""
        return fodf @ self.grid_to_sh.T
