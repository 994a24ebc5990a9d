"""Tests of equidmri.sims.digits: R³×S² MNIST volumes from scikit-learn's digits."""

import numpy as np
import pytest

from equidmri.sims.digits import (
    N_SQUARES,
    SLICE,
    SQUARE,
    load_digit_images,
    make_volumes,
    place_squares,
    project_on_sphere,
    rotate_nearest,
    split_images,
)
from equidmri.sphere.healpix import pixel_centres


def test_eight_non_overlapping_squares_of_distinct_digits():
    labels, position = place_squares(np.random.default_rng(3))
    digits = np.unique(labels[labels > 0])
    assert len(digits) == N_SQUARES and digits.min() >= 1 and digits.max() <= 9
    for digit in digits:
        xs, ys = np.nonzero(labels == digit)
        assert len(xs) == SQUARE**2 and np.ptp(xs) == SQUARE - 1 and np.ptp(ys) == SQUARE - 1
        assert sorted({tuple(p) for p in position[xs, ys]}) == [(i, j) for i in range(4) for j in range(4)]


def test_rotate_nearest_with_a_quarter_turn_is_rot90():
    volume = np.random.default_rng(0).integers(0, 9, (SLICE, SLICE, SLICE))
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(rotate_nearest(volume, turn), np.rot90(volume, 1, axes=(0, 1)))


def test_projection_lights_the_upper_hemisphere_where_the_pixel_is():
    image = np.zeros((1, 8, 8))
    image[0, 6, 1] = 1.0  # row 6 -> x ~ +0.625, column 1 -> y ~ -0.625
    vertices = pixel_centres(4)
    values = project_on_sphere(image, vertices)[0]
    assert np.all(values[vertices[:, 2] <= 0] == 0)
    brightest = vertices[values.argmax()]
    assert brightest[0] > 0.3 and brightest[1] < -0.3 and brightest[2] > 0


def test_volumes_have_the_declared_shapes_classes_and_range():
    images, targets = load_digit_images()
    assert images.shape == (1797, 8, 8) and 0 <= images.min() and images.max() <= 1
    pools = split_images(targets, np.random.default_rng(0))
    assert sum(len(p) for p in pools.values()) == 1797 and len(pools["train"]) == round(0.716 * 1797)
    assert not set(pools["train"]) & set(pools["test"])
    for rotate in (False, True):
        data = make_volumes(2, np.random.default_rng(1), images, targets, nside=2, depth=3, rotate=rotate)
        assert data.signals.shape == (2, SLICE, SLICE, 3, 48) and data.labels.shape == (2, SLICE, SLICE, 3)
        assert data.labels.min() == 0 and data.labels.max() <= 9
        assert 0 <= data.signals.min() and data.signals.max() <= 1 and data.signals.max() > 0.1
    with pytest.raises(ValueError, match="depth must be in"):
        make_volumes(1, np.random.default_rng(1), images, targets, nside=2, depth=17, rotate=False)
