"""Voxel-wise denoising networks: one dense baseline and two spherical designs, each with any activation applied in
signal space or in SH (Fourier) space — the layer × activation comparison of the seed report's WP5 (Sadegheih,
Weninger & Merhof 2023) and issue 21 §3.

Every network maps the b0-normalised diffusion-weighted signals of one voxel ``(B, N_dw)`` to their denoised values
``(B, N_dw)`` by a residual: ``output = projection(input) + body(...)``.

- ``dense``: ``N_dw -> 8 C -> 8 C -> N_dw`` fully connected (non-spherical: it sees the volumes as a vector, is bound
  to one acquisition and has no rotation structure); the projection is the identity.
- ``sh``: per-shell SH fit of the signal (degree ``lmax``), three :class:`~equidmri.nn.layers.SHDegreeLinear` layers
  (shells -> C -> C -> shells, rotation-equivariant per-degree mixing, DELIMIT-style), evaluated back at the
  acquisition's directions; the projection is the SH fit itself.
- ``chebyshev``: the SH fit evaluated on the HEALPix hemisphere V+ (``nside``), three voxel-wise graph-Chebyshev
  convolutions (:class:`~equidmri.nn.layers.SpatioSphericalConv` with ``kernel_size=1``, ESD's layer), fitted back
  to SH and evaluated at the directions.

Activations (between the layers, none after the last): ``space="signal"`` applies them to function values (on the
HEALPix grid for ``sh``, through :class:`~equidmri.nn.layers.SignalSpaceActivation`; pointwise on V+ for
``chebyshev``; on the hidden units for ``dense``), ``space="sh"`` to SH coefficients (``sh``: pointwise on the
coefficients; ``chebyshev``: :class:`~equidmri.nn.layers.SHSpaceActivation`). ``dense`` has no SH space.
Geometry (fit and evaluation matrices) is derived from the acquisition and kept out of ``state_dict``, so a
spherical network's weights can be rebuilt on another scheme with the same shells (e.g. rotated b-vectors).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from equidmri.denoise.defaults import (
    ACTIVATION_NAMES,
    DEFAULT_ACTIVATION,
    DEFAULT_LAYER,
    DEFAULT_SPACE,
    DEFAULT_WIDTH,
    LAYERS,
    SPACES,
)
from equidmri.dmri.gradients import B0_THRESHOLD, find_shells, max_sh_order
from equidmri.nn.layers import SHDegreeLinear, SHSpaceActivation, SignalSpaceActivation, SpatioSphericalConv
from equidmri.nn.layers.grid import SphereGrid
from equidmri.sphere.sh import sh_fit_matrix, sh_matrix

ACTIVATIONS = dict(zip(ACTIVATION_NAMES, (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Softplus)))
DENSE_WIDTH_FACTOR = 8  # hidden units of the dense baseline per channel of the spherical networks
SH_BASIS = "descoteaux07"

__all__ = ["ACTIVATIONS", "LAYERS", "SPACES", "DenoiserSpec", "SignalDenoiser"]


@dataclass(frozen=True)
class DenoiserSpec:
    """Architecture of a :class:`SignalDenoiser`.

    Attributes
    ----------
    layer : {"dense", "sh", "chebyshev"}
    activation : {"relu", "sigmoid", "tanh", "softplus"}
    space : {"signal", "sh"}
        Where the activation is applied (``dense``: ``"signal"`` only).
    width : int
        Channels C of the hidden layers (``dense``: ``DENSE_WIDTH_FACTOR * C`` units).
    lmax : int
        Even SH degree cap of the per-shell fits (lowered to what the sparsest shell determines).
    nside : int
        HEALPix resolution of the grid (V+ = 6 nside² pixels) of ``chebyshev`` and of the grid activations.
    cheb_order : int
        Chebyshev polynomials per graph filter.

    Raises
    ------
    ValueError
        On an unknown layer, activation or space, ``dense`` with ``space="sh"``, or a non-positive size.
    """

    layer: str = DEFAULT_LAYER
    activation: str = DEFAULT_ACTIVATION
    space: str = DEFAULT_SPACE
    width: int = DEFAULT_WIDTH
    lmax: int = 8
    nside: int = 4
    cheb_order: int = 5

    def __post_init__(self) -> None:
        for name, allowed in (("layer", LAYERS), ("activation", ACTIVATIONS), ("space", SPACES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if self.layer == "dense" and self.space != "signal":
            raise ValueError(
                "the dense layer has no SH space: its hidden units are not on a sphere (use space='signal')"
            )
        if min(self.width, self.nside, self.cheb_order) < 1 or self.lmax < 0 or self.lmax % 2:
            raise ValueError(f"width, nside, cheb_order must be >= 1 and lmax even >= 0, got {self}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def name(self) -> str:
        """``layer/activation/space``, e.g. ``sh/relu/signal``."""
        return f"{self.layer}/{self.activation}/{self.space}"


class SignalDenoiser(nn.Module):
    """A voxel-wise denoiser of ``spec`` bound to one acquisition: ``(B, N_dw)`` -> ``(B, N_dw)``.

    Parameters
    ----------
    spec : DenoiserSpec
    bvals : ndarray, shape ``(N,)``
        b-values of the acquisition, s/mm² (b <= 50 are b=0 volumes and are not the network's).
    bvecs : ndarray, shape ``(N, 3)``
        Unit b-vectors (voxel-axis frame).

    Raises
    ------
    ValueError
        If the acquisition has no DW volume, shapes disagree, or a spherical layer meets a shell with fewer than
        6 directions.
    """

    def __init__(self, spec: DenoiserSpec, bvals: np.ndarray, bvecs: np.ndarray) -> None:
        super().__init__()
        bvals, bvecs = np.asarray(bvals, dtype=np.float64), np.asarray(bvecs, dtype=np.float64)
        if bvecs.shape != (bvals.size, 3):
            raise ValueError(f"bvecs must have shape ({bvals.size}, 3), got {bvecs.shape}")
        self.spec = spec
        self.dw = np.flatnonzero(bvals > B0_THRESHOLD)
        self.n_dw = int(self.dw.size)
        shells = find_shells(bvals)
        shell_index = shells.index[self.dw]
        self.n_shells = int(shells.bvals.size)
        width, act = spec.width, ACTIVATIONS[spec.activation]
        if spec.layer == "dense":
            hidden = DENSE_WIDTH_FACTOR * width
            self.body = nn.Sequential(
                nn.Linear(self.n_dw, hidden), act(), nn.Linear(hidden, hidden), act(), nn.Linear(hidden, self.n_dw)
            )
            self.lmax = None
            return
        self.lmax = min(spec.lmax, *(max_sh_order(int(n)) for n in shells.n_directions))
        if self.lmax < 2:
            raise ValueError(
                f"a spherical denoiser needs >= 6 directions per shell, got {shells.n_directions.tolist()}"
            )
        fit, basis = _shell_operators(bvecs[self.dw], shell_index, self.n_shells, self.lmax)
        self.register_buffer("fit", fit.to(torch.get_default_dtype()), persistent=False)  # (S, K, N_dw)
        self.register_buffer("basis", basis.to(torch.get_default_dtype()), persistent=False)  # (N_dw, S, K)
        grid = SphereGrid(spec.nside, hemisphere=True)
        if spec.layer == "sh":
            sizes = [(self.n_shells, width), (width, width), (width, self.n_shells)]
            layers = [SHDegreeLinear(i, o, self.lmax) for i, o in sizes]
            if spec.space == "signal":
                acts = [SignalSpaceActivation(act(), grid, self.lmax, SH_BASIS) for _ in range(2)]
            else:
                acts = [act() for _ in range(2)]
            self.body = nn.Sequential(layers[0], acts[0], layers[1], acts[1], layers[2])
        else:
            self.body = GridBody(self.n_shells, width, grid, act, spec, self.lmax)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.n_dw:
            raise ValueError(f"expected (B, {self.n_dw}) diffusion-weighted signals, got {tuple(x.shape)}")
        if self.lmax is None:
            return x + self.body(x)
        coeffs = torch.einsum("skn,bn->bsk", self.fit.to(x.dtype), x)
        coeffs = coeffs + self.body(coeffs)
        return torch.einsum("nsk,bsk->bn", self.basis.to(x.dtype), coeffs)

    def extra_repr(self) -> str:
        return f"{self.spec.name}, n_dw={self.n_dw}, shells={self.n_shells}, lmax={self.lmax}"


def _shell_operators(bvecs: np.ndarray, shell_index: np.ndarray, n_shells: int, lmax: int) -> tuple[Tensor, Tensor]:
    """Per-shell least-squares fit ``(S, K, N_dw)`` and evaluation ``(N_dw, S, K)`` matrices, float64 (zeros
    across shells)."""
    k = (lmax + 1) * (lmax + 2) // 2
    fit, basis = np.zeros((n_shells, k, bvecs.shape[0])), np.zeros((bvecs.shape[0], n_shells, k))
    for s in range(n_shells):
        members = np.flatnonzero(shell_index == s)
        fit[s][:, members] = sh_fit_matrix(bvecs[members], lmax, SH_BASIS)
        basis[members, s] = sh_matrix(bvecs[members], lmax, SH_BASIS)
    return torch.tensor(fit), torch.tensor(basis)


class GridBody(nn.Module):
    """SH ``(B, S, K)`` -> values on V+ -> three voxel-wise Chebyshev convolutions -> SH ``(B, S, K)``."""

    def __init__(
        self, n_shells: int, width: int, grid: SphereGrid, act: type[nn.Module], spec: DenoiserSpec, lmax: int
    ):
        super().__init__()
        sizes = [(n_shells, width), (width, width), (width, n_shells)]
        self.convs = nn.ModuleList(
            SpatioSphericalConv(i, o, grid, cheb_order=spec.cheb_order, kernel_size=1) for i, o in sizes
        )
        if spec.space == "signal":
            self.acts = nn.ModuleList(act() for _ in range(2))
        else:
            self.acts = nn.ModuleList(SHSpaceActivation(act(), grid, lmax, SH_BASIS) for _ in range(2))
        vertices = np.asarray(grid.vertices)
        self.register_buffer(
            "grid_basis",
            torch.tensor(sh_matrix(vertices, lmax, SH_BASIS)).to(torch.get_default_dtype()),
            persistent=False,
        )
        self.register_buffer(
            "grid_fit", torch.tensor(sh_fit_matrix(vertices, lmax, SH_BASIS)).float(), persistent=False
        )

    def forward(self, coeffs: Tensor) -> Tensor:
        x = coeffs @ self.grid_basis.T.to(coeffs.dtype)  # (B, S, V)
        for i, conv in enumerate(self.convs):
            x = conv(x.transpose(1, 2)[:, :, None, None, None, :])[:, :, 0, 0, 0, :].transpose(1, 2)  # (B, C, V)
            if i < len(self.acts):
                x = self.acts[i](x)
        return x @ self.grid_fit.T.to(coeffs.dtype)
