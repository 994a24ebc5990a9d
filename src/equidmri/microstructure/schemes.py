"""Six-direction gradient schemes and the choice of a 6-direction subset from a denser acquisition.

Directions are unit b-vectors, rows ``(x, y, z)`` in the voxel-axis frame; a direction and its antipode
measure the same signal (the diffusion tensor is symmetric), so every comparison here is antipodal.
"""

from __future__ import annotations

import numpy as np

from equidmri.microstructure.config import SCHEME_NAMES
from equidmri.microstructure.tensor import design_matrix

GOLDEN_RATIO = (1.0 + np.sqrt(5.0)) / 2.0
MAX_CONDITION_NUMBER = 100.0  # dimensionless; Skare 6: 1.32, Jones 6: 1.58, Basser dual gradient: 2.0
COLLINEAR_DEG = 1.0  # degrees; directions (or antipodes) closer than this count as one direction


def _normalised(rows: list[tuple[float, float, float]]) -> np.ndarray:
    vectors = np.array(rows, dtype=np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors.setflags(write=False)
    return vectors


# Skare et al., J. Magn. Reson. 147(2):340-352, 2000 ("DSM6", minimum condition number). The numbers are
# the published 3-decimal values as listed in Q. Tian's DeepDTI data preparation script
# (github.com/qiyuantian/DeepDTI, s_DeepDTI_prepData.m, which cites Skare et al. 2000), normalised here.
SKARE = _normalised(
    [
        (0.91, 0.416, 0.0),
        (0.0, 0.91, 0.416),
        (0.416, 0.0, 0.91),
        (0.91, -0.416, 0.0),
        (0.0, 0.91, -0.416),
        (-0.416, 0.0, 0.91),
    ]
)

# Jones, Horsfield & Simmons, Magn. Reson. Med. 42(3):515-525, 1999: 6 directions by electrostatic
# repulsion. For N = 6 antipodal pairs the repulsion optimum is the 6 axes of the icosahedron (all pairwise
# angles 63.43 degrees), written here from that geometry; a 6-direction electrostatic scheme differs from it
# at most by a rotation (MRtrix gen_scheme's 6-direction output has the same angles and condition number).
JONES = _normalised(
    [
        (0.0, 1.0, GOLDEN_RATIO),
        (0.0, -1.0, GOLDEN_RATIO),
        (1.0, GOLDEN_RATIO, 0.0),
        (-1.0, GOLDEN_RATIO, 0.0),
        (GOLDEN_RATIO, 0.0, 1.0),
        (GOLDEN_RATIO, 0.0, -1.0),
    ]
)

SCHEMES = dict(zip(SCHEME_NAMES, (SKARE, JONES)))


def get_scheme(name: str) -> np.ndarray:
    """Unit vectors of a named 6-direction scheme, shape ``(6, 3)`` (read-only).

    Raises
    ------
    ValueError
        If ``name`` is not one of ``SCHEMES``.
    """
    if name not in SCHEMES:
        raise ValueError(f"scheme must be one of {sorted(SCHEMES)}, got {name!r}")
    return SCHEMES[name]


def condition_number(bvecs: np.ndarray) -> float:
    """Condition number of the tensor design rows ``[x², y², z², 2xy, 2xz, 2yz]`` of ``bvecs`` ``(N, 3)``.

    Infinite when the directions do not determine the 6 tensor elements.

    References
    ----------
    Skare et al., J. Magn. Reson. 147(2), 2000, eq. 6 (condition number of the transformation matrix).
    """
    return float(np.linalg.cond(design_matrix(bvecs)))


def count_distinct_directions(bvecs: np.ndarray, tolerance_deg: float = COLLINEAR_DEG) -> int:
    """Number of directions in ``bvecs`` ``(N, 3)`` that differ (antipodally) by more than ``tolerance_deg``."""
    cos_tol = np.cos(np.deg2rad(tolerance_deg))
    kept: list[np.ndarray] = []
    for vector in np.asarray(bvecs, dtype=np.float64):
        if all(abs(vector @ other) < cos_tol for other in kept):
            kept.append(vector)
    return len(kept)


def check_tensor_scheme(bvecs: np.ndarray, max_condition: float = MAX_CONDITION_NUMBER) -> float:
    """Check that diffusion-weighted directions ``(N, 3)`` determine a tensor; return the condition number.

    Raises
    ------
    ValueError
        If there are fewer than 6 distinct (non-collinear) directions, or the condition number of the
        design rows exceeds ``max_condition`` (a degenerate scheme: FA would be mostly noise).
    """
    distinct = count_distinct_directions(bvecs)
    if distinct < 6:
        raise ValueError(
            f"a diffusion tensor needs >= 6 non-collinear gradient directions, got {distinct} "
            f"(directions within {COLLINEAR_DEG}° of each other or of an antipode count once)"
        )
    cond = condition_number(bvecs)
    if not cond <= max_condition:
        raise ValueError(
            f"degenerate gradient scheme: condition number {cond:.3g} of the tensor design exceeds "
            f"{max_condition:g} (Skare 6: 1.32, Jones 6: 1.58)"
        )
    return cond


def select_subset(bvecs: np.ndarray, scheme: np.ndarray) -> np.ndarray:
    """Indices of the acquired directions that best match a scheme, in the scheme's order.

    For each scheme vector in turn, the acquired direction nearest to it antipodally (largest ``|g · s|``)
    among those not chosen yet (Goodwin-Allcock et al., CDMRI 2022, §2.3; greedy, in scheme order).

    Parameters
    ----------
    bvecs : ndarray, shape ``(N, 3)``
        Acquired unit b-vectors (diffusion-weighted only).
    scheme : ndarray, shape ``(M, 3)``
        Target unit vectors, ``M <= N``.

    Returns
    -------
    ndarray, shape ``(M,)`` int64
        Row indices into ``bvecs``, distinct.

    Raises
    ------
    ValueError
        If a shape is wrong or there are fewer acquired directions than scheme vectors.
    """
    bvecs, scheme = np.asarray(bvecs, dtype=np.float64), np.asarray(scheme, dtype=np.float64)
    if bvecs.ndim != 2 or bvecs.shape[1] != 3 or scheme.ndim != 2 or scheme.shape[1] != 3:
        raise ValueError(f"bvecs and scheme must have shape (N, 3), got {bvecs.shape} and {scheme.shape}")
    if scheme.shape[0] > bvecs.shape[0]:
        raise ValueError(f"cannot choose {scheme.shape[0]} directions among {bvecs.shape[0]}")
    similarity = np.abs(scheme @ bvecs.T)  # (M, N) |cos| of the antipodal angle
    chosen: list[int] = []
    for row in similarity:
        row = row.copy()
        row[chosen] = -np.inf
        chosen.append(int(np.argmax(row)))
    return np.array(chosen, dtype=np.int64)
