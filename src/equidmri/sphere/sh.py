"""Real, even-degree spherical harmonics at arbitrary directions (dipy's bases).

dipy is the only source of SH bases in equidmri: ``descoteaux07`` (``legacy=False``) for every
internal fit, ``tournier07`` (``legacy=False``) for files written for MRtrix3.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from dipy.core.geometry import cart2sphere
from dipy.reconst.shm import real_sh_descoteaux, real_sh_tournier, sph_harm_ind_list

SH_BASES = ("descoteaux07", "tournier07")
SIGNAL_SMOOTH = 0.0  # Laplace-Beltrami weight of signal SH fits: plain least squares, as MRtrix amp2sh and
# dipy sf_to_sh (smooth=0). dipy's QBall value 0.006 keeps only 25% of l=6 and 10% of l=8 on 64 directions.


def check_lmax(lmax: int) -> int:
    """Return ``lmax`` if it is a non-negative even integer, else raise ``ValueError``."""
    if isinstance(lmax, bool) or not isinstance(lmax, (int, np.integer)):
        raise TypeError(f"lmax must be an int, got {type(lmax).__name__}")
    if lmax < 0 or lmax % 2:
        raise ValueError(f"lmax must be even and >= 0, got {lmax}")
    return int(lmax)


def n_coeffs(lmax: int) -> int:
    """Number K = (lmax+1)(lmax+2)/2 of even-degree SH coefficients (8 -> 45, 18 -> 190)."""
    lmax = check_lmax(lmax)
    return (lmax + 1) * (lmax + 2) // 2


def lmax_from_n_coeffs(k: int) -> int:
    """Inverse of :func:`n_coeffs`; raises ``ValueError`` if ``k`` is not such a count."""
    lmax = int(round((np.sqrt(8 * k + 1) - 3) / 2))
    if lmax < 0 or lmax % 2 or n_coeffs(lmax) != k:
        raise ValueError(f"{k} is not the coefficient count of an even-degree SH basis (1, 6, 15, 28, 45, ...)")
    return lmax


def degrees(lmax: int, full_basis: bool = False) -> np.ndarray:
    """Degree l of each coefficient, shape ``(K,)`` int, in dipy/MRtrix order (l ascending, m = -l..l).

    ``full_basis`` includes the odd degrees (``(lmax+1)^2`` coefficients) for signals that are not
    antipodally symmetric.
    """
    _, l_values = sph_harm_ind_list(check_lmax(lmax), full_basis=full_basis)
    return np.asarray(l_values, dtype=np.int64)


def sh_matrix(directions: np.ndarray, lmax: int, sh_basis: str, full_basis: bool = False) -> np.ndarray:
    """SH basis evaluated at unit directions.

    Parameters
    ----------
    directions : ndarray, shape ``(V, 3)``
        Unit vectors (any frame; the basis is expressed in that frame).
    lmax : int
        Even maximal degree.
    sh_basis : {"descoteaux07", "tournier07"}
        dipy basis name, always with ``legacy=False``.
    full_basis : bool
        Also the odd degrees (dipy ``full_basis``): ``K = (lmax+1)^2`` instead of the even-degree count.

    Returns
    -------
    ndarray, shape ``(V, K)`` float64
        ``B[v, j] = Y_j(directions[v])``, so values on the sphere are ``coeffs @ B.T``.

    Raises
    ------
    ValueError
        If the basis is unknown, ``lmax`` is not even, or ``directions`` is not ``(V, 3)``.
    """
    directions = np.asarray(directions, dtype=np.float64)
    if directions.ndim != 2 or directions.shape[1] != 3:
        raise ValueError(f"directions must have shape (V, 3), got {directions.shape}")
    if sh_basis not in SH_BASES:
        raise ValueError(f"sh_basis must be one of {SH_BASES}, got {sh_basis!r}")
    _, theta, phi = cart2sphere(*directions.T)
    basis_fn = real_sh_descoteaux if sh_basis == "descoteaux07" else real_sh_tournier
    basis, _, _ = basis_fn(check_lmax(lmax), theta, phi, full_basis=full_basis, legacy=False)
    return np.asarray(basis, dtype=np.float64)


def sh_fit_matrix(
    directions: np.ndarray, lmax: int, sh_basis: str, smooth: float = SIGNAL_SMOOTH, full_basis: bool = False
) -> np.ndarray:
    """Regularised least-squares operator from samples to SH coefficients.

    Returns ``F`` of shape ``(K, V)`` float64 with ``coeffs = F @ samples``, minimising
    ``||B c - s||^2 + smooth * ||diag(l(l+1)) c||^2`` (Laplace-Beltrami penalty, Descoteaux et al.,
    MRM 2007, eq. 12); ``full_basis`` as in :func:`sh_matrix`.

    Raises
    ------
    ValueError
        If there are fewer directions than coefficients, or ``smooth`` is negative.
    """
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    basis = sh_matrix(directions, lmax, sh_basis, full_basis)
    if basis.shape[0] < basis.shape[1]:
        raise ValueError(f"{basis.shape[0]} directions cannot determine {basis.shape[1]} SH coefficients (lmax {lmax})")
    lb = (degrees(lmax, full_basis) * (degrees(lmax, full_basis) + 1)).astype(np.float64)
    gram = basis.T @ basis + smooth * np.diag(lb**2)
    return np.linalg.solve(gram, basis.T)


@lru_cache(maxsize=32)
def _rotation_matrix_cached(rotation_bytes: bytes, lmax: int, basis_in: str, basis_out: str) -> np.ndarray:
    rotation = np.frombuffer(rotation_bytes, dtype=np.float64).reshape(3, 3)
    from equidmri.sphere.healpix import pixel_centres  # a dense, exact quadrature-free design

    directions = pixel_centres(16)  # 3072 points >> 45..190 coefficients: exact for band-limited functions
    target = sh_matrix(directions, lmax, basis_out)
    source = sh_matrix(directions @ rotation, lmax, basis_in)  # f_out(u) = f_in(R^T u)
    out, *_ = np.linalg.lstsq(target, source, rcond=None)
    out.setflags(write=False)  # cached: callers must not be able to corrupt later calls
    return out


def sh_rotation_matrix(rotation: np.ndarray, lmax: int, basis_in: str, basis_out: str) -> np.ndarray:
    """Matrix that rotates an fODF given by SH coefficients and changes its basis.

    For coefficients ``c`` of ``f`` in ``basis_in``, ``M @ c`` are the coefficients in ``basis_out`` of
    ``g(u) = f(R^T u)``, i.e. ``f`` carried by the rotation ``R`` (e.g. voxel-axis frame -> world frame).
    Exact for band-limited functions (least squares on 3072 HEALPix centres).

    Parameters
    ----------
    rotation : ndarray, shape ``(3, 3)``
        Orthogonal matrix (det may be -1: reflections are handled the same way).

    Returns
    -------
    ndarray, shape ``(K, K)`` float64
    """
    rotation = np.asarray(rotation, dtype=np.float64)
    if rotation.shape != (3, 3) or not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6):
        raise ValueError(f"rotation must be an orthogonal (3, 3) matrix, got {rotation}")
    return _rotation_matrix_cached(np.ascontiguousarray(rotation).tobytes(), check_lmax(lmax), basis_in, basis_out)


def mean_weights(directions: np.ndarray, lmax: int, sh_basis: str = "descoteaux07") -> np.ndarray:
    """Weights ``w`` ``(V,)`` with ``Σ w_v f(v)`` = the mean of ``f`` over the sphere, exact for even ``l <= lmax``.

    The smallest change (least squares) of the uniform weights ``1 / V`` that integrates every even-degree
    SH up to ``lmax`` exactly: ``w = 1/V + Y (YᵀY)⁻¹ (b - Yᵀ 1/V)`` with ``Y`` the SH matrix at ``directions``
    and ``b = (1/sqrt(4π), 0, ..., 0)``. HEALPix centres alone are not an exact quadrature even for l = 2.

    Raises
    ------
    ValueError
        If ``lmax`` is not even and >= 0, or there are fewer directions than coefficients.
    """
    basis = sh_matrix(directions, lmax, sh_basis)
    n_vertices, k = basis.shape
    if n_vertices < k:
        raise ValueError(f"{n_vertices} directions cannot integrate the {k} SH of degree <= {lmax} exactly")
    uniform = np.full(n_vertices, 1.0 / n_vertices)
    target = np.zeros(k)
    target[0] = 1.0 / np.sqrt(4.0 * np.pi)
    return uniform + basis @ np.linalg.solve(basis.T @ basis, target - basis.T @ uniform)


def laplace_beltrami(directions: np.ndarray, lmax: int, sh_basis: str = "descoteaux07") -> np.ndarray:
    """The Laplace-Beltrami operator of the sphere on band-limited samples, rescaled to [-1, 1], ``(V, V)``.

    ``A = B diag(2 l(l+1) / (lmax(lmax+1)) - 1) F`` with ``B`` the even-degree SH matrix at ``directions``
    and ``F`` its unregularised least-squares fit (:func:`sh_fit_matrix`): samples are fitted with SH of
    even degree <= ``lmax``, each degree is scaled by its Laplace-Beltrami eigenvalue ``-l(l+1)`` (rescaled to
    the Chebyshev domain like the graph Laplacian of DeepSphere) and re-evaluated. Unlike the HEALPix graph
    Laplacian it commutes exactly with rotations of band-limited signals, so polynomials in ``A`` are exact
    zonal (isotropic) spherical filters up to degree ``lmax``; content above ``lmax`` is not represented and
    enters only through the least-squares fit (aliasing).

    Raises
    ------
    ValueError
        As :func:`sh_fit_matrix` (fewer directions than coefficients, odd ``lmax``).
    """
    l_values = degrees(lmax).astype(np.float64)
    scale = 2.0 * l_values * (l_values + 1) / (lmax * (lmax + 1)) - 1.0 if lmax > 0 else -np.ones(1)
    return sh_matrix(directions, lmax, sh_basis) @ (scale[:, None] * sh_fit_matrix(directions, lmax, sh_basis, 0.0))
