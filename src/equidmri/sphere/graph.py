"""Graph Laplacians of the HEALPix sphere, the hemispherical Laplacian L+ and its Chebyshev stack.

Graph (DeepSphere, Perraudin et al. 2019; SHD reference values): k nearest neighbours by chord distance
(plus ties, so that the neighbourhood of -p is the antipode of p's), symmetrised, Gaussian weights
``w = 2 ** -(d / sigma)**2`` with ``sigma = 0.8 / nside``, normalised Laplacian ``L = I - D^-1/2 A D^-1/2``,
rescaled to ``L~ = 2 L / lambda_max - I`` for Chebyshev filtering (Defferrard et al., NeurIPS 2016).

Hemispherical Laplacian (Elaldi, Gerig & Dey, NeurIPS 2024, §3.2, Theorem 1): for p, q in V+,
``L+(p, q) = L~(p, q) + L~(p, -q)``; for antipodally symmetric f, ``(T_k(L~) f)(p) = (T_k(L+) f+)(p)``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from equidmri.sphere.healpix import antipode_index, check_nside, pixel_centres
from equidmri.sphere.hemisphere import hemisphere_pixels

N_NEIGHBOURS = 8  # k of the k-NN graph (DeepSphere / SHD reference code)
SIGMA_SCALE = 0.8  # Gaussian width sigma = SIGMA_SCALE / nside (SHD reference code)
TIE_RTOL = 1e-9  # neighbours this close to the k-th distance are ties and all kept


def default_sigma(nside: int) -> float:
    """Kernel width sigma = 0.8 / nside (chord-distance units)."""
    return SIGMA_SCALE / check_nside(nside)


def adjacency(nside: int, sigma: float | None = None, n_neighbours: int = N_NEIGHBOURS) -> np.ndarray:
    """Weighted symmetric k-NN adjacency of the full HEALPix sphere, shape ``(npix, npix)`` float64.

    Raises
    ------
    ValueError
        If ``sigma`` is not positive or ``n_neighbours`` is not in [1, npix - 1].
    """
    centres = pixel_centres(nside)
    n = centres.shape[0]
    sigma = default_sigma(nside) if sigma is None else float(sigma)
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if not 1 <= n_neighbours <= n - 1:
        raise ValueError(f"n_neighbours must be in [1, {n - 1}] at nside {nside}, got {n_neighbours}")
    dist = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)
    np.fill_diagonal(dist, np.inf)
    kth = np.sort(dist, axis=1)[:, n_neighbours - 1 : n_neighbours]
    neighbours = dist <= kth * (1 + TIE_RTOL)
    neighbours |= neighbours.T
    return np.where(neighbours, 2.0 ** (-((dist / sigma) ** 2)), 0.0)


def rescaled_laplacian(nside: int, sigma: float | None = None, n_neighbours: int = N_NEIGHBOURS) -> np.ndarray:
    """``L~ = 2 L / lambda_max - I`` of the normalised Laplacian, shape ``(npix, npix)`` float64.

    Its spectrum lies in [-1, 1], the domain of the Chebyshev polynomials.
    """
    weights = adjacency(nside, sigma, n_neighbours)
    inv_sqrt_degree = 1.0 / np.sqrt(weights.sum(axis=1))
    laplacian = np.eye(len(weights)) - inv_sqrt_degree[:, None] * weights * inv_sqrt_degree[None, :]
    lambda_max = np.linalg.eigvalsh(laplacian)[-1]
    return 2.0 * laplacian / lambda_max - np.eye(len(weights))


def hemisphere_laplacian(nside: int, sigma: float | None = None, n_neighbours: int = N_NEIGHBOURS) -> np.ndarray:
    """``L+(p, q) = L~(p, q) + L~(p, -q)`` on V+, shape ``(npix/2, npix/2)`` float64 (SHD Theorem 1)."""
    full = rescaled_laplacian(nside, sigma, n_neighbours)
    hemi = hemisphere_pixels(nside)
    return full[np.ix_(hemi, hemi)] + full[np.ix_(hemi, antipode_index(nside)[hemi])]


def filter_laplacian(nside: int, sigma: float | None = None, hemisphere: bool = True) -> np.ndarray:
    """The operator the spherical filters are polynomials of: L+ on V+ (``hemisphere``) or L~ on V."""
    return (hemisphere_laplacian if hemisphere else rescaled_laplacian)(nside, sigma)


def matrix_chebyshev(operator: np.ndarray, cheb_order: int) -> np.ndarray:
    """``T_0(A) .. T_{cheb_order-1}(A)`` of a square matrix ``A`` (spectrum in [-1, 1]), shape ``(K, V, V)``.

    Three-term recursion ``T_k = 2 A T_{k-1} - T_{k-2}``, ``T_0 = I``, ``T_1 = A`` (Defferrard et al. 2016 eq. 4).
    """
    stack = np.empty((cheb_order,) + operator.shape)
    stack[0] = np.eye(operator.shape[0])
    if cheb_order > 1:
        stack[1] = operator
    for k in range(2, cheb_order):
        stack[k] = 2.0 * operator @ stack[k - 1] - stack[k - 2]
    return stack


@lru_cache(maxsize=32)
def _chebyshev_stack(nside: int, cheb_order: int, sigma: float | None, hemisphere: bool) -> np.ndarray:
    stack = matrix_chebyshev(filter_laplacian(nside, sigma, hemisphere), cheb_order)
    stack.setflags(write=False)
    return stack


def chebyshev_stack(nside: int, cheb_order: int, sigma: float | None = None, hemisphere: bool = True) -> np.ndarray:
    """Precomputed Chebyshev polynomials ``T_0 .. T_{cheb_order-1}`` of the (hemispherical) Laplacian.

    Parameters
    ----------
    nside : int
        HEALPix resolution.
    cheb_order : int
        Number K_cheb of polynomials (polynomial degree ``cheb_order - 1``), >= 1.
    sigma : float, optional
        Gaussian kernel width (chord distance); default ``0.8 / nside``.
    hemisphere : bool
        ``True``: polynomials of L+ on V+ (SHD); ``False``: of L~ on the full sphere (RT-ESD).

    Returns
    -------
    ndarray, shape ``(cheb_order, V, V)`` float64, read-only, cached per arguments.

    Raises
    ------
    ValueError
        If ``cheb_order < 1`` or the graph arguments are invalid.
    """
    if isinstance(cheb_order, bool) or not isinstance(cheb_order, (int, np.integer)) or cheb_order < 1:
        raise ValueError(f"cheb_order must be an int >= 1, got {cheb_order!r}")
    sigma = None if sigma is None else float(sigma)
    return _chebyshev_stack(check_nside(nside), int(cheb_order), sigma, bool(hemisphere))


@lru_cache(maxsize=32)
def _laplacian_eigh(nside: int, sigma: float | None, hemisphere: bool) -> tuple[np.ndarray, np.ndarray]:
    operator = filter_laplacian(nside, sigma, hemisphere)
    eigvals, eigvecs = np.linalg.eigh(operator)
    eigvals = np.clip(eigvals, -1.0, 1.0)  # rounding can push the extremes a few ulp past +-1
    for array in (eigvals, eigvecs):
        array.setflags(write=False)
    return eigvals, eigvecs


def laplacian_eigh(nside: int, sigma: float | None = None, hemisphere: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of L+ (``hemisphere=True``) or L~: ``(eigvals (V,), eigvecs (V, V))`` float64.

    Both operators are symmetric (L+ because L~ is invariant under the antipodal map), so
    ``T_k(L) = U diag(T_k(eigvals)) U^T`` exactly: the basis of the spectral path of the layers.
    """
    return _laplacian_eigh(check_nside(nside), None if sigma is None else float(sigma), bool(hemisphere))


def chebyshev_polynomials(x: np.ndarray, cheb_order: int) -> np.ndarray:
    """``T_0(x) .. T_{cheb_order-1}(x)`` by the three-term recursion, shape ``(cheb_order,) + x.shape``.

    Raises
    ------
    ValueError
        If ``cheb_order < 1``.
    """
    if isinstance(cheb_order, bool) or not isinstance(cheb_order, (int, np.integer)) or cheb_order < 1:
        raise ValueError(f"cheb_order must be an int >= 1, got {cheb_order!r}")
    out = np.empty((cheb_order,) + np.shape(x))
    out[0] = 1.0
    if cheb_order > 1:
        out[1] = x
    for k in range(2, cheb_order):
        out[k] = 2.0 * x * out[k - 1] - out[k - 2]
    return out
