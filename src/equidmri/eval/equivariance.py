"""Equivariance error of spatio-spherical operators (Elaldi, Gerig & Dey, NeurIPS 2024, eq. 13, App. A.2).

``error = ||G N(f) - N(G f)||^2 / ||N(f)||^2`` for G = (T, R): T a rotation of the voxel grid, R a rotation
of every voxel's sphere, or both. An operator ``N`` is any callable from ``(B, C, X, Y, Z, V)`` to
``(B, X, Y, Z, C', V)`` on one set of sphere vertices. The transforms:

- ``"grid"``: T one of the 24 rotations of the cube, an exact permutation of the voxels;
- ``"grid-trilinear"``: T an arbitrary rotation about the volume centre with trilinear resampling, both sides
  compared inside the central ball of radius ``TRILINEAR_RADIUS`` voxels (interpolation and the zero padding
  of the borders make this an upper bound, reported apart from the exact cube rotations);
- ``"voxel"``: R an arbitrary rotation of SO(3), applied to band-limited inputs (even SH degree
  <= ``LMAX_IN``) by rotating their SH coefficients and evaluating them on the vertices. A grid signal has no
  exact arbitrary rotation, so the outputs are compared through their least-squares SH projection of
  degree <= ``LMAX_OUT`` (orthonormal basis: the coefficient norm is the L2 norm on the sphere);
- ``"both"``: a cube rotation T and an arbitrary R together.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch import Tensor

from equidmri.sphere.healpix import pixel_centres
from equidmri.sphere.sh import sh_fit_matrix, sh_matrix, sh_rotation_matrix

TRANSFORMS = ("grid", "voxel", "both", "grid-trilinear")
LMAX_IN = 8  # band limit of the random inputs (issue #5; SHD App. A.2)
LMAX_OUT = 8  # degree of the SH projection through which rotated outputs are compared
SH_BASIS = "descoteaux07"
TRILINEAR_RADIUS = 2.5  # voxels from the centre of the volume compared after an arbitrary grid rotation
INPUT_NSIDE = 8  # HEALPix grid on which the U[0, 1] inputs are drawn before their SH projection

Operator = Callable[[Tensor], Tensor]  # (B, C, X, Y, Z, V) -> (B, X, Y, Z, C', V)


def cube_rotations() -> np.ndarray:
    """The 24 rotations of the cube (signed permutation matrices of determinant +1), shape ``(24, 3, 3)``."""
    rotations = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            matrix = np.zeros((3, 3))
            matrix[range(3), perm] = signs
            if np.linalg.det(matrix) > 0:
                rotations.append(matrix)
    return np.stack(rotations)


def rotate_voxels(x: Tensor, rotation: np.ndarray, first: int) -> Tensor:
    """Carry a voxel field by a cube rotation M: ``out(p) = x(M^T p)``, p centred voxel coordinates.

    Parameters
    ----------
    x : Tensor
        Spatial axes ``first, first + 1, first + 2`` (X, Y, Z), all of the same length.
    rotation : ndarray, shape ``(3, 3)``
        A signed permutation matrix (see :func:`cube_rotations`).

    Raises
    ------
    ValueError
        If ``rotation`` is not a signed permutation or the spatial axes differ in length.
    """
    rotation = np.asarray(rotation)
    axes = [first + i for i in range(3)]
    if len({x.shape[a] for a in axes}) != 1:
        raise ValueError(f"a cube rotation needs a cubic volume, got spatial shape {[x.shape[a] for a in axes]}")
    if not (np.abs(rotation).sum(axis=1) == 1).all() or not np.isin(rotation, (-1, 0, 1)).all():
        raise ValueError(f"rotation must be a signed permutation matrix, got {rotation.tolist()}")
    source = np.abs(rotation).argmax(axis=1)  # output axis i reads input axis source[i]
    order = list(range(x.ndim))
    for i in range(3):
        order[axes[i]] = axes[source[i]]
    out = x.permute(order)
    flips = [axes[i] for i in range(3) if rotation[i, source[i]] < 0]
    return out.flip(flips) if flips else out


def rotate_voxels_trilinear(x: Tensor, rotation: np.ndarray, first: int) -> Tensor:
    """``out(p) = x(M^T p)`` for any rotation M about the volume centre, trilinear, zero outside.

    ``x`` has its spatial axes ``first .. first + 2`` of equal length; every other axis is carried along.
    """
    n = x.shape[first]
    moved = x.movedim((first, first + 1, first + 2), (-3, -2, -1))
    lead = moved.shape[:-3]
    volume = moved.reshape(1, -1, n, n, n)
    coords = torch.linspace(-1.0, 1.0, n, dtype=x.dtype)
    points = torch.stack(torch.meshgrid(coords, coords, coords, indexing="ij"), dim=-1)  # (X, Y, Z, 3) as (x, y, z)
    source = points @ torch.as_tensor(rotation, dtype=x.dtype)  # row p -> M^T p
    grid = source.flip(-1)[None]  # grid_sample's last axis is (W, H, D) = (z, y, x)
    out = torch.nn.functional.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(*lead, n, n, n).movedim((-3, -2, -1), (first, first + 1, first + 2))


def central_ball(n: int, radius: float = TRILINEAR_RADIUS) -> Tensor:
    """Boolean mask ``(n, n, n)`` of the voxels within ``radius`` of the volume centre."""
    coords = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    grid = torch.stack(torch.meshgrid(coords, coords, coords, indexing="ij"), dim=-1)
    return grid.norm(dim=-1) <= radius


def relative_error(transformed_output: Tensor, output_of_transformed: Tensor, output: Tensor) -> float:
    """``||a - b||^2 / ||N(f)||^2`` (SHD eq. 13) summed over every axis."""
    return float((transformed_output - output_of_transformed).square().sum() / output.square().sum())


@dataclass(frozen=True)
class EquivarianceSample:
    """One random input and one random group element.

    Attributes
    ----------
    coeffs : Tensor, shape ``(1, C, X, Y, Z, K)`` float64
        Even SH coefficients (``descoteaux07``, lmax ``LMAX_IN``) of the input of every channel and voxel.
    voxel_rotation : ndarray, shape ``(3, 3)``
        R, uniform on SO(3).
    cube_rotation : ndarray, shape ``(3, 3)``
        T, one of the 23 non-identity cube rotations.
    grid_rotation : ndarray, shape ``(3, 3)``
        Arbitrary rotation of the voxel grid, uniform on SO(3).
    """

    coeffs: Tensor
    voxel_rotation: np.ndarray
    cube_rotation: np.ndarray
    grid_rotation: np.ndarray


def draw_sample(rng: np.random.Generator, channels: int, size: int) -> EquivarianceSample:
    """U[0, 1] values on the HEALPix nside-8 sphere, projected on even SH degrees <= ``LMAX_IN``, and rotations."""
    vertices = pixel_centres(INPUT_NSIDE)
    values = rng.uniform(0.0, 1.0, size=(1, channels, size, size, size, len(vertices)))
    coeffs = torch.from_numpy(values @ sh_fit_matrix(vertices, LMAX_IN, SH_BASIS).T)
    cubes = cube_rotations()
    cubes = cubes[np.abs(cubes - np.eye(3)).sum(axis=(1, 2)) > 0]
    voxel, grid = Rotation.random(2, random_state=rng).as_matrix()
    return EquivarianceSample(coeffs, voxel, cubes[rng.integers(len(cubes))], grid)


def _coefficient_rotation(rotation: np.ndarray, lmax: int) -> Tensor:
    return torch.from_numpy(np.array(sh_rotation_matrix(rotation, lmax, SH_BASIS, SH_BASIS)))


@lru_cache(maxsize=8)
def _sh_operators(vertices_bytes: bytes) -> tuple[Tensor, Tensor]:
    """Input basis ``(V, K)`` and output projection ``(K', V)`` on the vertices (cached per grid)."""
    vertices = np.frombuffer(vertices_bytes).reshape(-1, 3)
    return (
        torch.from_numpy(sh_matrix(vertices, LMAX_IN, SH_BASIS)),
        torch.from_numpy(sh_fit_matrix(vertices, LMAX_OUT, SH_BASIS)),
    )


def equivariance_errors(operator: Operator, vertices: np.ndarray, sample: EquivarianceSample) -> dict[str, float]:
    """Relative error of eq. 13 for each transform in ``TRANSFORMS`` on one sample.

    Parameters
    ----------
    operator : callable
        ``(B, C, X, Y, Z, V) -> (B, X, Y, Z, C', V)``, float64, batch entries independent (eval mode).
    vertices : ndarray, shape ``(V, 3)``
        Unit vectors of the operator's input and output vertices (V+ or the full sphere).
    sample : EquivarianceSample

    Returns
    -------
    dict
        Transform name -> relative squared error (dimensionless).
    """
    basis_in, fit_out = _sh_operators(np.ascontiguousarray(vertices, dtype=np.float64).tobytes())
    rotate_in = _coefficient_rotation(sample.voxel_rotation, LMAX_IN)
    rotate_out = _coefficient_rotation(sample.voxel_rotation, LMAX_OUT)
    f = sample.coeffs @ basis_in.T
    rf = (sample.coeffs @ rotate_in.T) @ basis_in.T
    cube, grid = sample.cube_rotation, sample.grid_rotation
    inputs = [f, rotate_voxels(f, cube, 2), rf, rotate_voxels(rf, cube, 2), rotate_voxels_trilinear(f, grid, 2)]
    with torch.no_grad():
        y, y_cube, y_voxel, y_both, y_grid = operator(torch.cat(inputs)).unbind(0)
    sh_y = y @ fit_out.T
    rotated_sh_y = sh_y @ rotate_out.T
    ball = central_ball(y.shape[0])
    return {
        "grid": relative_error(rotate_voxels(y, cube, 0), y_cube, y),
        "voxel": relative_error(rotated_sh_y, y_voxel @ fit_out.T, sh_y),
        "both": relative_error(rotate_voxels(rotated_sh_y, cube, 0), y_both @ fit_out.T, sh_y),
        "grid-trilinear": relative_error(rotate_voxels_trilinear(y, grid, 0)[ball], y_grid[ball], y[ball]),
    }
