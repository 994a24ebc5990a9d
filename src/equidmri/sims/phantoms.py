"""DiSCo-like numerical phantoms: curved, crossing and fanning tubular bundles with known fibre directions.

A volume holds pairs of bundles (tubes along quadratic Bézier curves) that cross at chosen angles, one
of them fanning; tube borders have partial volume; the rest of the ellipsoidal mask is an isotropic
GM-like compartment with a CSF-like blob. Geometry, fractions and signals are computed for all voxels
at once (NumPy); every direction is in the voxel-axis frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from equidmri.sims.synthesis import Protocol, add_rician_noise, fibre_signal
from equidmri.sphere.sh import n_coeffs, sh_matrix

N_PEAKS = 3  # fibre populations kept per voxel (DiSCo and MRtrix sh2peaks keep 3)
CROSSING_ANGLES = ((30.0, 45.0), (45.0, 60.0), (60.0, 90.0))  # degrees; one bundle pair per range
CROSS_RADIUS = 0.2  # crossing points lie within this fraction of the size from the centre
BUNDLE_RADIUS = (0.09, 0.14)  # tube radius range, fraction of the size (3.6-5.6 voxels at 40)
BUNDLE_LENGTH = 1.6  # chord length of each curve, fraction of the size: bundles traverse the mask
BEND = (0.0, 0.35)  # control-point offset of the Bézier curve, fraction of its length (0: straight)
FAN_DEG = 20.0  # degrees; deviation from the tangent at the border of the fanning bundle
CURVE_SAMPLES = 400  # points per curve
LAMBDA_PAR = (1.5e-3, 1.9e-3)  # mm²/s, axial diffusivity range of a bundle
LAMBDA_PERP = (0.2e-3, 0.4e-3)  # mm²/s, radial diffusivity range
MASK_SEMI_AXES = (0.47, 0.47, 0.42)  # ellipsoidal mask, fraction of the size
CSF_RADIUS = 0.12  # radius of the CSF-like blob, fraction of the size
CSF_OFFSET = 0.1  # largest offset of its centre from the volume centre, fraction of the size (inside dipy's
# response ROI of 10 voxels at size 40)
MIN_GT_FRACTION = 0.1  # fibres with a smaller voxel fraction contribute signal but are not ground-truth peaks
MERGE_DEG = 25.0  # degrees; closer ground-truth fibres form one peak (the evaluation cone)
S0 = 100.0  # b=0 signal of a voxel full of any tissue, scanner units

__all__ = ["Bundle", "Phantom", "random_bundles", "make_phantom"]


@dataclass(frozen=True, eq=False)
class Bundle:
    """A tube along a curve: ``points`` ``(Q, 3)`` voxel coordinates, ``radius`` in voxels, diffusivities
    ``evals = (λ∥, λ⊥)`` in mm²/s, and ``fan`` = tan of the border deviation (0: parallel fibres)."""

    points: np.ndarray
    radius: float
    evals: tuple[float, float]
    fan: float = 0.0


@dataclass(frozen=True, eq=False)
class Phantom:
    """One volume and its ground truth (voxel-axis frame).

    Attributes
    ----------
    dwi : ndarray, shape ``(X, Y, Z, N)`` float32
        Noisy signal, scanner units (``s0`` = 100 for a voxel full of any tissue).
    protocol : Protocol
    mask : ndarray, shape ``(X, Y, Z)`` bool
    peak_dirs : ndarray, shape ``(X, Y, Z, P, 3)``
        Unit fibre directions, by decreasing fraction, zeros where there is none.
    peak_fractions : ndarray, shape ``(X, Y, Z, P)``
        Voxel volume fraction of each ground-truth fibre.
    tissue_fractions : ndarray, shape ``(X, Y, Z, 3)``
        WM, GM, CSF fractions; they sum to 1 inside the mask, 0 outside.
    signal_fibres : ndarray, shape ``(X, Y, Z)`` int
        Number of fibre populations in the signal (before small ones are dropped and close ones merged).
    description : dict
        Bundles, crossing angles and settings (JSON-friendly).
    """

    dwi: np.ndarray
    protocol: Protocol
    mask: np.ndarray
    peak_dirs: np.ndarray
    peak_fractions: np.ndarray
    tissue_fractions: np.ndarray
    signal_fibres: np.ndarray
    description: dict[str, Any] = field(default_factory=dict)

    def fodf_sh(self, lmax: int = 8) -> np.ndarray:
        """Ground-truth WM fODF: each fibre a Dirac delta on its direction weighted by its voxel fraction,
        band-limited to ``lmax`` (even).

        Returns
        -------
        ndarray, shape ``(X, Y, Z, K)`` float32
            SH coefficients, ``descoteaux07`` (dipy, ``legacy=False``), voxel-axis frame; ``K = n_coeffs(lmax)``.
            Coefficient 0 times sqrt(4 pi) is the voxel's fibre fraction (the fODF's integral); zero where there is
            no fibre.
        """
        dirs = self.peak_dirs.reshape(-1, 3)
        present = np.linalg.norm(dirs, axis=-1) > 0
        basis = np.zeros((dirs.shape[0], n_coeffs(lmax)))
        basis[present] = sh_matrix(dirs[present], lmax, "descoteaux07")
        weighted = self.peak_fractions.reshape(-1, 1) * basis
        return weighted.reshape(*self.peak_fractions.shape, -1).sum(-2).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _perpendicular(direction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return _unit(v - (v @ direction) * direction)


def _bezier(start: np.ndarray, control: np.ndarray, end: np.ndarray) -> np.ndarray:
    t = np.linspace(0.0, 1.0, CURVE_SAMPLES)[:, None]
    return (1 - t) ** 2 * start + 2 * t * (1 - t) * control + t**2 * end


def _curve_through(
    point: np.ndarray, direction: np.ndarray, length: float, bend: float, rng: np.random.Generator
) -> np.ndarray:
    """Quadratic Bézier whose tangent at t = 1/2 is ``direction`` and which passes through ``point`` there."""
    offset = bend * length * _perpendicular(direction, rng)
    start, end = point - direction * length / 2 - offset / 2, point + direction * length / 2 - offset / 2
    return _bezier(start, start + direction * length / 2 + offset, end)


def random_bundles(
    size: int,
    rng: np.random.Generator,
    lambda_par: tuple[float, float] = LAMBDA_PAR,
    lambda_perp: tuple[float, float] = LAMBDA_PERP,
) -> tuple[list[Bundle], list[float]]:
    """Pairs of bundles crossing at one angle of each range of ``CROSSING_ANGLES``; the first bundle fans.

    Returns
    -------
    bundles : list of Bundle
    angles : list of float
        Crossing angle of each pair at its crossing point, degrees.
    """
    centre = np.full(3, (size - 1) / 2)
    bundles, angles = [], []
    for low, high in CROSSING_ANGLES:
        point = centre + rng.uniform(-CROSS_RADIUS, CROSS_RADIUS, 3) * size
        first = _unit(rng.normal(size=3))
        angle = rng.uniform(low, high)
        second = np.cos(np.radians(angle)) * first + np.sin(np.radians(angle)) * _perpendicular(first, rng)
        angles.append(float(angle))
        for direction in (first, second):
            fan = np.tan(np.radians(FAN_DEG)) if not bundles else 0.0
            bundles.append(
                Bundle(
                    points=_curve_through(point, direction, BUNDLE_LENGTH * size, rng.uniform(*BEND), rng),
                    radius=rng.uniform(*BUNDLE_RADIUS) * size,
                    evals=(rng.uniform(*lambda_par), rng.uniform(*lambda_perp)),
                    fan=fan,
                )
            )
    return bundles, angles


def _bundle_field(bundle: Bundle, voxels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Partial-volume weight ``(M,)`` in [0, 1] and fibre direction ``(M, 3)`` of one bundle at ``voxels``."""
    tangents = _unit(np.gradient(bundle.points, axis=0))
    d2 = (voxels**2).sum(-1)[:, None] - 2 * voxels @ bundle.points.T + (bundle.points**2).sum(-1)  # (M, Q)
    nearest = d2.argmin(axis=1)
    distance = np.linalg.norm(voxels - bundle.points[nearest], axis=-1)
    weight = np.clip(bundle.radius + 0.5 - distance, 0.0, 1.0)  # a one-voxel partial-volume ramp at the border
    tangent = tangents[nearest]
    radial = voxels - bundle.points[nearest]
    radial -= (radial * tangent).sum(-1, keepdims=True) * tangent
    return weight, _unit(tangent + bundle.fan * radial / bundle.radius)


def _merge_close(dirs: np.ndarray, fractions: np.ndarray) -> None:
    """In place: of two fibres closer than ``MERGE_DEG`` (antipodally), the smaller joins the larger."""
    cos_merge = np.cos(np.radians(MERGE_DEG))
    for i in range(dirs.shape[1]):
        for j in range(i + 1, dirs.shape[1]):
            close = (np.abs((dirs[:, i] * dirs[:, j]).sum(-1)) > cos_merge) & (fractions[:, j] > 0)
            fractions[close, i] += fractions[close, j]
            fractions[close, j] = 0.0


def _compose(bundles: list[Bundle], voxels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directions ``(M, P, 3)``, fractions ``(M, P)`` (sum = WM fraction <= 1) and ``(λ∥, λ⊥)`` ``(M, P, 2)``."""
    fields = [_bundle_field(b, voxels) for b in bundles]
    weights = np.stack([w for w, _ in fields], axis=1)  # (M, B)
    dirs = np.stack([d for _, d in fields], axis=1)  # (M, B, 3)
    evals = np.array([b.evals for b in bundles])  # (B, 2)
    top = np.argsort(-weights, axis=1)[:, :N_PEAKS]
    fractions = np.take_along_axis(weights, top, axis=1)
    fractions /= np.maximum(fractions.sum(1, keepdims=True), 1.0)
    return np.take_along_axis(dirs, top[..., None], axis=1), fractions, evals[top]


def _ground_truth(dirs: np.ndarray, fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge close fibres, drop small ones, sort by fraction; zeros where there is no peak."""
    fractions = fractions.copy()
    _merge_close(dirs, fractions)
    fractions[fractions < MIN_GT_FRACTION] = 0.0
    order = np.argsort(-fractions, axis=1)
    fractions = np.take_along_axis(fractions, order, axis=1)
    dirs = np.take_along_axis(dirs, order[..., None], axis=1) * (fractions[..., None] > 0)
    return dirs, fractions


def _ellipsoid(grid: np.ndarray, centre: np.ndarray, semi_axes: np.ndarray) -> np.ndarray:
    return (((grid - centre) / semi_axes) ** 2).sum(-1) <= 1.0


def make_phantom(
    size: int,
    protocol: Protocol,
    rng: np.random.Generator,
    *,
    snr: float | None = 30.0,
    lambda_par: tuple[float, float] = LAMBDA_PAR,
    lambda_perp: tuple[float, float] = LAMBDA_PERP,
) -> Phantom:
    """A phantom volume of ``size``³ voxels (1 mm) with random bundles and Rician noise.

    Parameters
    ----------
    size : int
        Edge of the cubic volume, voxels (>= 8).
    protocol : Protocol
        Acquisition; b-vectors in the voxel-axis frame.
    rng : numpy.random.Generator
        Source of the geometry and the noise.
    snr : float or None
        b=0 signal of pure WM over the noise σ (Rician); None for a noise-free volume.
    lambda_par, lambda_perp : (float, float)
        Ranges (mm²/s) of each bundle's axial and radial diffusivity.

    Returns
    -------
    Phantom

    Raises
    ------
    ValueError
        If ``size`` < 8 or ``snr`` is not positive.

    References
    ----------
    Rafael-Patino et al., "DiSCo", Front. Neuroinform. 2021 (the design imitated); Daducci et al., IEEE
    TMI 33(2), 2014 (ground-truth peaks); Gudbjartsson & Patz, MRM 34, 1995 (Rician noise).
    """
    if size < 8:
        raise ValueError(f"size must be >= 8 voxels, got {size}")
    shape = (size, size, size)
    grid = np.stack(np.meshgrid(*(np.arange(size, dtype=np.float64),) * 3, indexing="ij"), axis=-1)
    centre = np.full(3, (size - 1) / 2)
    mask = _ellipsoid(grid, centre, np.array(MASK_SEMI_AXES) * size)
    voxels = grid[mask]
    bundles, angles = random_bundles(size, rng, lambda_par, lambda_perp)
    dirs, fractions, evals = _compose(bundles, voxels)
    csf_centre = centre + rng.uniform(-CSF_OFFSET, CSF_OFFSET, 3) * size
    csf = np.clip(CSF_RADIUS * size + 0.5 - np.linalg.norm(voxels - csf_centre, axis=-1), 0.0, 1.0)
    fractions *= (1.0 - csf)[:, None]  # bundles pass around the CSF-like blob, as around a ventricle
    wm = fractions.sum(1)
    gm = 1.0 - wm - csf

    dwi = np.zeros(shape + (protocol.bvals.size,), dtype=np.float32)
    dwi[mask] = fibre_signal(protocol, dirs, fractions, evals, gm, csf, S0)
    dwi = add_rician_noise(dwi, snr, S0, rng)

    gt_dirs, gt_fractions = _ground_truth(dirs, fractions)
    peak_dirs = np.zeros(shape + (N_PEAKS, 3))
    peak_fractions = np.zeros(shape + (N_PEAKS,))
    tissue = np.zeros(shape + (3,))
    signal_fibres = np.zeros(shape, dtype=np.int64)
    peak_dirs[mask], peak_fractions[mask], tissue[mask] = gt_dirs, gt_fractions, np.stack([wm, gm, csf], -1)
    signal_fibres[mask] = (fractions > 0).sum(1)
    counts = np.bincount((gt_fractions > 0).sum(1), minlength=N_PEAKS + 1)
    description = {
        "size": size,
        "snr": snr,
        "s0": S0,
        "crossing_angles_deg": angles,
        "bundles": [
            {
                "radius_voxels": b.radius,
                "lambda_par_mm2_s": b.evals[0],
                "lambda_perp_mm2_s": b.evals[1],
                "fan_deg": float(np.degrees(np.arctan(b.fan))),
            }
            for b in bundles
        ],
        "mask_voxels": int(mask.sum()),
        "voxels_by_fibre_count": counts.tolist(),
        "min_gt_fraction": MIN_GT_FRACTION,
        "merge_deg": MERGE_DEG,
    }
    return Phantom(
        dwi=dwi,
        protocol=protocol,
        mask=mask,
        peak_dirs=peak_dirs,
        peak_fractions=peak_fractions,
        tissue_fractions=tissue,
        signal_fibres=signal_fibres,
        description=description,
    )
