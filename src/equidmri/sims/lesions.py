"""Synthetic white-matter lesions with known ground truth, inserted into phantoms and real volumes.

No lesion data can be downloaded here, so the lesion sets are **synthetic**: ellipsoidal or irregular (an
ellipsoid with one or two overlapping satellites) lesions, centred in white matter, are written into

- multi-shell DiSCo-like phantoms (:func:`equidmri.sims.phantoms.make_phantom`, noise-free, then Rician noise),
- or the real volumes bundled with dipy (``small_64D``, ``small_101D``, through :mod:`equidmri.data`), zero-padded
  to a cube, with extra Rician noise.

In a lesion voxel a fraction ``c`` (the lesion's contrast) of the tissue is replaced by isotropic free-water-like
diffusion with diffusivity ``D`` and the b=0 signal is T2-bright by a gain ``g``:

    S_lesion(b, g) = g [(1 - c) S(b, g) + c S0 exp(-b D)],

with S0 the voxel's mean b=0 signal. ``D`` is above the largest axial diffusivity of the phantoms' fibres, so a
lesion lowers the fibre fraction, raises the mean diffusivity (MD) and lowers the attenuation in every direction,
and raises the b=0 signal. Labels are exactly the voxels so changed.

Tilted subjects (head rotated relative to training, for the rotated test set) are **exact 90° grid rotations** R
(one of the 23 non-identity rotations of the cube): a phantom is simulated on the b-vectors Rᵀg, its voxels are
rotated (out(p) = in(Rᵀp)) and it is stored with the acquisition's b-vectors g — the tilted head measured with
the same scanner protocol. A real volume cannot be re-simulated: its voxels are rotated and its b-vectors become
R g (the same measurement described in the rotated frame). No small-angle (resampled) rotation is generated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from equidmri.eval.equivariance import cube_rotations, rotate_voxels
from equidmri.sims.phantoms import S0, make_phantom
from equidmri.sims.synthesis import Protocol, add_rician_noise, make_protocol

LESION_DIFFUSIVITY = (2.0e-3, 3.0e-3)  # mm²/s: above the phantoms' largest λ∥ (1.9e-3), below free water
LESION_CONTRAST = (0.3, 0.8)  # fraction of the voxel's tissue replaced by the isotropic compartment
LESION_T2_GAIN = (1.2, 1.6)  # b=0 signal gain of a lesion voxel (T2-bright, as MS lesions on b=0/T2 images)
LESION_RADIUS = (0.08, 0.22)  # semi-axes of a lesion ellipsoid, fraction of the volume's edge (0.8-2.2 at 10)
LESION_COUNT = (1, 3)  # lesions per volume, inclusive
IRREGULAR_PROBABILITY = 0.5  # chance that a lesion gets one or two satellite ellipsoids
WM_THRESHOLD = 0.5  # lesion centres lie where the WM fraction (phantom) is above this
REAL_WM_FA = 0.25  # ... or, in a real volume, where the DTI FA is above this
PHANTOM_SHELLS = (1000.0, 2000.0)  # s/mm², the lesion phantoms' multi-shell protocol
PHANTOM_DIRECTIONS = 12  # per shell, so that the tiny volumes stay cheap for the p×q-space network
PHANTOM_B0 = 1
BACKGROUNDS = ("phantom", "small_64D", "small_101D")

__all__ = [
    "BACKGROUNDS",
    "LesionVolume",
    "insert_lesions",
    "lesion_protocol",
    "phantom_lesion_volume",
    "random_lesion_labels",
    "real_lesion_volume",
    "tilt_rotation",
]


@dataclass(frozen=True, eq=False)
class LesionVolume:
    """One synthetic lesion volume (voxel-axis frame).

    Attributes
    ----------
    dwi : ndarray, shape ``(X, Y, Z, N)`` float32
        Signal, scanner units.
    bvals : ndarray, shape ``(N,)``
        s/mm².
    bvecs : ndarray, shape ``(N, 3)``
        Unit b-vectors (zero rows for b=0), voxel-axis frame.
    mask : ndarray, shape ``(X, Y, Z)`` bool
    labels : ndarray, shape ``(X, Y, Z)`` bool
        Lesion voxels (inside the mask).
    description : dict
        Background, seed, SNR, tilt rotation and every lesion's parameters (JSON-friendly).
    """

    dwi: np.ndarray
    bvals: np.ndarray
    bvecs: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    description: dict[str, Any] = field(default_factory=dict)


def lesion_protocol(seed: int = 0) -> Protocol:
    """The lesion phantoms' acquisition: 1 b=0 and 12 directions on each of b = 1000, 2000 s/mm² (25 volumes)."""
    return make_protocol(
        np.random.default_rng(seed), n_b0=PHANTOM_B0, shells=PHANTOM_SHELLS, directions_per_shell=PHANTOM_DIRECTIONS
    )


def tilt_rotation(rng: np.random.Generator) -> np.ndarray:
    """A random non-identity 90° grid rotation ``(3, 3)`` (signed permutation matrix, det +1)."""
    rotations = [r for r in cube_rotations() if not np.allclose(r, np.eye(3))]
    return rotations[int(rng.integers(len(rotations)))]


def _ellipsoid(grid: np.ndarray, centre: np.ndarray, semi_axes: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    local = (grid - centre) @ rotation  # coordinates along the ellipsoid's axes
    return ((local / semi_axes) ** 2).sum(-1) <= 1.0


def random_lesion_labels(
    shape: tuple[int, int, int], candidates: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Lesion index map and parameters: ``(X, Y, Z)`` int (0 background, k for lesion k) and one dict per lesion.

    Parameters
    ----------
    shape : (int, int, int)
    candidates : ndarray, shape ``(X, Y, Z)`` bool
        Voxels where a lesion may be centred (white matter).
    mask : ndarray, shape ``(X, Y, Z)`` bool
        Lesions are cut to the mask.
    rng : numpy.random.Generator

    Raises
    ------
    ValueError
        If no voxel is a candidate.
    """
    centres = np.argwhere(candidates)
    if centres.size == 0:
        raise ValueError("no white-matter voxel to centre a lesion on")
    grid = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij"), axis=-1)
    edge = max(shape)
    index = np.zeros(shape, dtype=np.int64)
    lesions = []
    for k in range(1, int(rng.integers(LESION_COUNT[0], LESION_COUNT[1] + 1)) + 1):
        centre = centres[rng.integers(len(centres))].astype(np.float64)
        semi_axes = rng.uniform(*LESION_RADIUS, 3) * edge
        rotation = Rotation.random(random_state=rng).as_matrix()
        region = _ellipsoid(grid, centre, semi_axes, rotation)
        satellites = int(rng.integers(1, 3)) if rng.random() < IRREGULAR_PROBABILITY else 0
        for _ in range(satellites):
            offset = rng.normal(size=3)
            offset *= semi_axes.max() / np.linalg.norm(offset)
            region |= _ellipsoid(grid, centre + offset, semi_axes * rng.uniform(0.5, 0.9), rotation)
        region &= mask & (index == 0)
        index[region] = k
        lesions.append(
            {
                "centre_voxel": centre.tolist(),
                "semi_axes_voxels": semi_axes.tolist(),
                "satellites": satellites,
                "voxels": int(region.sum()),
                "contrast": float(rng.uniform(*LESION_CONTRAST)),
                "diffusivity_mm2_s": float(rng.uniform(*LESION_DIFFUSIVITY)),
                "t2_gain": float(rng.uniform(*LESION_T2_GAIN)),
            }
        )
    return index, lesions


def insert_lesions(dwi: np.ndarray, bvals: np.ndarray, index: np.ndarray, lesions: list[dict[str, Any]]) -> np.ndarray:
    """The signal with lesions: ``g [(1 - c) S + c S0 exp(-b D)]`` in the voxels of each lesion (module docstring).

    Parameters
    ----------
    dwi : ndarray, shape ``(X, Y, Z, N)``
        Signal, scanner units.
    bvals : ndarray, shape ``(N,)``
        s/mm² (b <= 50 counts as b=0 for S0).
    index : ndarray, shape ``(X, Y, Z)`` int
        Lesion k's voxels hold k (:func:`random_lesion_labels`).
    lesions : list of dict
        ``contrast``, ``diffusivity_mm2_s``, ``t2_gain`` of each lesion.

    Returns
    -------
    ndarray, shape ``(X, Y, Z, N)`` float32
    """
    out = np.array(dwi, dtype=np.float32, copy=True)
    b0 = bvals <= 50.0
    for k, lesion in enumerate(lesions, start=1):
        voxels = index == k
        signal = out[voxels].astype(np.float64)
        s0 = signal[:, b0].mean(-1, keepdims=True)
        free = s0 * np.exp(-bvals * lesion["diffusivity_mm2_s"])
        c = lesion["contrast"]
        out[voxels] = lesion["t2_gain"] * ((1 - c) * signal + c * free)
    return out


def phantom_lesion_volume(
    size: int, protocol: Protocol, seed: int, snr: float | None, tilt: np.ndarray | None = None
) -> LesionVolume:
    """A DiSCo-like phantom of ``size``³ voxels (1 mm) with lesions, optionally tilted by a grid rotation.

    The same ``seed`` gives the same bundles and lesions with and without ``tilt``.

    Parameters
    ----------
    size : int
        Voxels per edge (>= 8).
    protocol : Protocol
        Acquisition (e.g. :func:`lesion_protocol`).
    seed : int
    snr : float or None
        b=0 signal of pure WM over the Rician σ; None for noise-free.
    tilt : ndarray, shape ``(3, 3)``, optional
        90° grid rotation R of the head (:func:`tilt_rotation`): simulated on the b-vectors Rᵀg, voxels rotated.

    Raises
    ------
    ValueError
        From :func:`make_phantom` (size < 8, snr <= 0).
    """
    rng = np.random.default_rng(seed)
    rotation = np.eye(3) if tilt is None else np.asarray(tilt, dtype=np.float64)
    simulated = Protocol(protocol.bvals, protocol.bvecs @ rotation)  # row i: (Rᵀ g_i)ᵀ
    phantom = make_phantom(size, simulated, rng, snr=None)
    wm = phantom.tissue_fractions[..., 0] > WM_THRESHOLD
    index, lesions = random_lesion_labels(phantom.mask.shape, wm, phantom.mask, rng)
    dwi = insert_lesions(phantom.dwi, protocol.bvals, index, lesions)
    dwi, mask, index = _rotate(dwi, phantom.mask, index, rotation)
    dwi = add_rician_noise(dwi, snr, S0, rng) * mask[..., None]
    description = {"background": "phantom", "size": size, "seed": seed, "snr": snr, "lesions": lesions}
    description["tilt"] = rotation.tolist()
    return LesionVolume(dwi, protocol.bvals.copy(), protocol.bvecs.copy(), mask, index > 0, description)


def real_lesion_volume(
    name: str,
    dwi: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    mask: np.ndarray,
    seed: int,
    snr: float | None,
    tilt: np.ndarray | None = None,
) -> LesionVolume:
    """Lesions in a real volume, zero-padded to a cube, optionally tilted by a grid rotation.

    Lesion centres lie where the DTI FA (dipy, :func:`equidmri.microstructure.tensor.fit_tensors`) is above
    ``REAL_WM_FA`` (anywhere in the mask if no voxel is).

    Parameters
    ----------
    name : str
        The volume's name (recorded).
    dwi : ndarray, shape ``(X, Y, Z, N)``
        Real signal, scanner units (:func:`equidmri.data.load_real_volume`).
    bvals, bvecs : ndarray, shapes ``(N,)`` and ``(N, 3)``
        s/mm²; voxel-axis frame.
    mask : ndarray, shape ``(X, Y, Z)`` bool
        Brain mask.
    seed : int
    snr : float or None
        Median b=0 in the mask over the σ of added Rician noise; None adds none.
    tilt : ndarray, shape ``(3, 3)``, optional
        90° grid rotation R: voxels rotated (out(p) = in(Rᵀp)), b-vectors R g.
    """
    from equidmri.dmri.gradients import make_gtab
    from equidmri.microstructure.tensor import fit_tensors, tensor_fa

    rng = np.random.default_rng(seed)
    edge = max(dwi.shape[:3])
    pad = [(0, edge - n) for n in dwi.shape[:3]]
    dwi = np.pad(np.asarray(dwi, dtype=np.float32), pad + [(0, 0)])
    mask = np.pad(np.asarray(mask, dtype=bool), pad)
    fa = np.zeros(mask.shape)
    fa[mask] = tensor_fa(fit_tensors(np.maximum(dwi[mask], 1e-3), make_gtab(bvals, bvecs)))
    wm = mask & (fa > REAL_WM_FA)
    index, lesions = random_lesion_labels(mask.shape, wm if wm.any() else mask, mask, rng)
    dwi = insert_lesions(dwi, bvals, index, lesions)
    rotation = np.eye(3) if tilt is None else np.asarray(tilt, dtype=np.float64)
    dwi, mask, index = _rotate(dwi, mask, index, rotation)
    s0 = float(np.median(dwi[mask][:, bvals <= 50.0]))
    dwi = add_rician_noise(dwi, snr, s0, rng) * mask[..., None]
    description = {"background": name, "padded_edge": edge, "seed": seed, "snr": snr, "lesions": lesions}
    description["tilt"] = rotation.tolist()
    return LesionVolume(dwi, np.asarray(bvals).copy(), bvecs @ rotation.T, mask, index > 0, description)


def _rotate(
    dwi: np.ndarray, mask: np.ndarray, index: np.ndarray, rotation: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxels carried by a grid rotation: out(p) = in(Rᵀ p) (:func:`equidmri.eval.equivariance.rotate_voxels`)."""
    if np.allclose(rotation, np.eye(3)):
        return dwi, mask, index
    arrays = [torch.from_numpy(np.ascontiguousarray(a)) for a in (dwi, mask, index)]
    return tuple(rotate_voxels(a, rotation, 0).contiguous().numpy() for a in arrays)
