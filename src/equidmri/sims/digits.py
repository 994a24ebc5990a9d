"""R³×S² MNIST: spatio-spherical digit volumes for segmentation (Elaldi, Gerig & Dey, NeurIPS 2024, App. B).

MNIST cannot be downloaded here: the digits are scikit-learn's bundled ``load_digits`` (1797 handwritten
8x8 images, UCI optical digits). A volume is a 16 x 16 slice holding eight non-overlapping 4 x 4 squares,
each of a different random digit 1-9 (0 = background), extruded along z into tubes. Every voxel's sphere
carries a partial view of a random image of its class (digit 0 images in the background): the image is
zeroed outside a ``CROP`` x ``CROP`` window whose position follows the voxel's position inside its square,
so that one voxel alone does not show the whole digit, and is projected orthographically onto the upper
hemisphere (z > 0) of the HEALPix sphere. Optional rotations, independent and drawn per volume: one random
rotation of the voxel grid about the tube axis z (uniform angle; labels resampled by nearest neighbour about
the centre of a 16^3 cube, whose central ``depth`` slices are kept) and one uniform random rotation of SO(3)
of every voxel's sphere (the images are sampled at ``R^T v``). The paper rotates the grid by any rotation of
SO(3); about z only, a thin slab (``depth`` < 16, what a CPU can train on) stays a rotated copy of itself,
which the E(3)-equivariant networks can exploit, while a slab cut from an obliquely rotated cube shows
tube cross-sections that no slab of the training set contains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import affine_transform, map_coordinates
from scipy.spatial.transform import Rotation

from equidmri.extras import require_extra
from equidmri.sphere.healpix import pixel_centres

SLICE = 16  # voxels per edge of a slice (and of the cube that is rotated)
SQUARE = 4  # edge of a digit's square, voxels
N_SQUARES = 8  # squares (tubes) per volume
CROP = 5  # pixels per edge of the window of an 8 x 8 digit that one voxel sees
N_CLASSES = 10  # background 0 and the digits 1-9
IMAGE = 8  # load_digits images are 8 x 8
DIGIT_MAX = 16.0  # load_digits intensities are 0..16
SPLIT_FRACTIONS = {"train": 716 / 1000, "val": 142 / 1000, "test": 142 / 1000}  # SHD App. B


@dataclass(frozen=True)
class DigitVolumes:
    """A set of volumes.

    Attributes
    ----------
    signals : ndarray, shape ``(N, X, Y, Z, V)`` float32
        Spherical signal of every voxel on the full HEALPix sphere, intensities in [0, 1].
    labels : ndarray, shape ``(N, X, Y, Z)`` int64
        Class of every voxel: 0 background, 1-9 digits.
    """

    signals: np.ndarray
    labels: np.ndarray


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: ``images (1797, 8, 8)`` float64 in [0, 1] and ``targets (1797,)`` 0-9.

    Raises
    ------
    equidmri.extras.MissingExtraError
        If scikit-learn is not installed (the ``bench`` extra).
    """
    datasets = require_extra("sklearn.datasets", "bench", "the R³×S² MNIST stand-in", package="scikit-learn")
    digits = datasets.load_digits()
    return digits.images / DIGIT_MAX, digits.target.astype(np.int64)


def split_images(targets: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Disjoint image indices per split in the proportions 716/142/142, so test volumes show unseen images."""
    order = rng.permutation(len(targets))
    n_train = round(SPLIT_FRACTIONS["train"] * len(order))
    n_val = round(SPLIT_FRACTIONS["val"] * len(order))
    return {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}


def place_squares(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(SLICE, SLICE)`` of eight non-overlapping squares, each voxel's position in its square ``(.., 2)``."""
    while True:  # random sequential placement; restart in the rare case the slice fills up
        labels = np.zeros((SLICE, SLICE), dtype=np.int64)
        position = np.zeros((SLICE, SLICE, 2), dtype=np.int64)
        digits = rng.choice(np.arange(1, N_CLASSES), size=N_SQUARES, replace=False)
        for digit in digits:
            free = [
                (x, y)
                for x in range(SLICE - SQUARE + 1)
                for y in range(SLICE - SQUARE + 1)
                if not labels[x : x + SQUARE, y : y + SQUARE].any()
            ]
            if not free:
                break
            x, y = free[rng.integers(len(free))]
            labels[x : x + SQUARE, y : y + SQUARE] = digit
            position[x : x + SQUARE, y : y + SQUARE] = np.stack(
                np.meshgrid(range(SQUARE), range(SQUARE), indexing="ij"), axis=-1
            )
        else:
            return labels, position


def rotate_nearest(volume: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """``out(p) = volume(M^T p)`` about the centre of a cubic ``(n, n, n)`` volume, nearest neighbour, 0 outside."""
    centre = (np.array(volume.shape[:3]) - 1) / 2.0
    offset = centre - rotation.T @ centre
    return affine_transform(volume, rotation.T, offset=offset, order=0, mode="constant", cval=0)


def project_on_sphere(images: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Orthographic projection of images onto the upper hemisphere, bilinear, zero for z <= 0.

    Parameters
    ----------
    images : ndarray, shape ``(M, 8, 8)``
    directions : ndarray, shape ``(M, V, 3)`` or ``(V, 3)``
        Unit vectors where each image is sampled; image row i, column j spans x, y in [-1, 1].

    Returns
    -------
    ndarray, shape ``(M, V)`` float64
    """
    directions = np.broadcast_to(directions, (len(images),) + directions.shape[-2:])
    rows = (directions[..., 0] + 1) / 2 * IMAGE - 0.5  # pixel centres at (i + 0.5) / 8 of [0, 1]
    cols = (directions[..., 1] + 1) / 2 * IMAGE - 0.5
    index = np.broadcast_to(np.arange(len(images))[:, None], rows.shape)
    values = map_coordinates(images, [index, rows, cols], order=1, mode="constant", cval=0.0)
    return np.where(directions[..., 2] > 0, values, 0.0)


def make_volume(
    rng: np.random.Generator,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    nside: int,
    depth: int,
    grid_rotation: bool,
    sphere_rotation: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """One volume: ``signal (SLICE, SLICE, depth, 12 nside^2)`` float32 and ``labels (SLICE, SLICE, depth)``."""
    labels, position = place_squares(rng)
    labels = np.repeat(labels[:, :, None], SLICE, axis=2)  # tubes along z in a cube
    position = np.repeat(position[:, :, None], SLICE, axis=2)
    if grid_rotation:
        turn = Rotation.from_euler("z", rng.uniform(0.0, 2 * np.pi)).as_matrix()
        labels = rotate_nearest(labels, turn)
        position = np.stack([rotate_nearest(position[..., i], turn) for i in range(2)], axis=-1)
    first = (SLICE - depth) // 2
    labels, position = labels[:, :, first : first + depth], position[:, :, first : first + depth]
    flat, where = labels.ravel(), position.reshape(-1, 2)
    chosen = np.array([rng.choice(np.flatnonzero(targets == c)) for c in flat])
    crops = images[chosen].copy()
    step = (IMAGE - CROP) / (SQUARE - 1)
    corner = np.where(flat[:, None] > 0, np.round(where * step), rng.integers(0, IMAGE - CROP + 1, where.shape))
    rows, cols = np.arange(IMAGE)[None, :], np.arange(IMAGE)[None, :]
    inside_rows = (rows >= corner[:, :1]) & (rows < corner[:, :1] + CROP)
    inside_cols = (cols >= corner[:, 1:]) & (cols < corner[:, 1:] + CROP)
    crops *= inside_rows[:, :, None] & inside_cols[:, None, :]
    vertices = pixel_centres(nside)
    if sphere_rotation:
        vertices = vertices @ Rotation.random(random_state=rng).as_matrix()  # rows R^T v: f(R^T v)
    signal = project_on_sphere(crops, vertices)
    return signal.reshape(*labels.shape, -1).astype(np.float32), labels


def make_volumes(
    n: int,
    rng: np.random.Generator,
    images: np.ndarray,
    targets: np.ndarray,
    *,
    nside: int,
    depth: int,
    rotate: bool,
) -> DigitVolumes:
    """``n`` volumes, each with grid and sphere rotations if ``rotate``.

    Raises
    ------
    ValueError
        If ``depth`` is not in [1, SLICE] or a class has no image.
    """
    if not 1 <= depth <= SLICE:
        raise ValueError(f"depth must be in [1, {SLICE}], got {depth}")
    if len(np.unique(targets)) < N_CLASSES:
        raise ValueError(f"every digit 0-9 needs an image, got {sorted(np.unique(targets).tolist())}")
    volumes = [
        make_volume(rng, images, targets, nside=nside, depth=depth, grid_rotation=rotate, sphere_rotation=rotate)
        for _ in range(n)
    ]
    return DigitVolumes(np.stack([v[0] for v in volumes]), np.stack([v[1] for v in volumes]))
