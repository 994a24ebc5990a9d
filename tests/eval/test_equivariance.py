"""Tests of equidmri.eval.equivariance: cube rotations, voxel resampling and the eq. 13 metric."""

import numpy as np
import pytest
import torch

from equidmri.eval.equivariance import (
    central_ball,
    cube_rotations,
    draw_sample,
    equivariance_errors,
    relative_error,
    rotate_voxels,
    rotate_voxels_trilinear,
)
from equidmri.sphere.healpix import pixel_centres
from equidmri.sphere.sh import sh_fit_matrix

ROT_Z_90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def test_the_24_cube_rotations_are_distinct_proper_and_a_group():
    rotations = cube_rotations()
    assert rotations.shape == (24, 3, 3)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0)
    keys = {r.astype(int).tobytes() for r in rotations}
    assert len(keys) == 24
    assert all((a @ b).astype(int).tobytes() in keys for a in rotations for b in rotations)


def test_rotate_voxels_carries_a_linear_field_like_the_matrix():
    """A field a . p on centred coordinates becomes (M a) . p, for every cube rotation M."""
    a = torch.tensor([0.3, -1.1, 0.7], dtype=torch.float64)
    coords = torch.stack(torch.meshgrid(*(torch.arange(5.0, dtype=torch.float64) - 2,) * 3, indexing="ij"), dim=-1)
    for rotation in cube_rotations():
        expected = coords @ (torch.from_numpy(rotation) @ a)
        torch.testing.assert_close(rotate_voxels(coords @ a, rotation, 0), expected, atol=1e-12, rtol=0)
    assert torch.equal(rotate_voxels(coords[None], ROT_Z_90, 1), torch.rot90(coords[None], 1, dims=(1, 2)))


def test_trilinear_resampling_is_exact_for_cube_rotations_and_linear_fields():
    x = torch.randn(2, 5, 5, 5, 3, dtype=torch.float64)
    for rotation in cube_rotations()[::5]:
        torch.testing.assert_close(
            rotate_voxels_trilinear(x, rotation, 1), rotate_voxels(x, rotation, 1), atol=1e-12, rtol=0
        )
    a = torch.tensor([0.2, 0.5, -0.4], dtype=torch.float64)
    coords = torch.stack(torch.meshgrid(*(torch.arange(7.0, dtype=torch.float64) - 3,) * 3, indexing="ij"), dim=-1)
    rotation = np.array([[0.36, 0.48, -0.8], [-0.8, 0.6, 0.0], [0.48, 0.64, 0.6]])
    inside = central_ball(7, 2.9)
    got = rotate_voxels_trilinear(coords @ a, rotation, 0)[inside]
    torch.testing.assert_close(got, (coords @ (torch.from_numpy(rotation) @ a))[inside], atol=1e-12, rtol=0)


def test_rotate_voxels_rejects_non_cube_rotations_and_non_cubic_volumes():
    with pytest.raises(ValueError, match="signed permutation"):
        rotate_voxels(torch.zeros(3, 3, 3), np.eye(3) * 0.5, 0)
    with pytest.raises(ValueError, match="cubic volume"):
        rotate_voxels(torch.zeros(3, 3, 4), np.eye(3), 0)


def test_relative_error_is_the_squared_norm_ratio():
    assert relative_error(torch.ones(4), torch.zeros(4), 2 * torch.ones(4)) == pytest.approx(0.25)


def test_a_rotation_invariant_operator_has_zero_voxel_error_and_a_vertex_shuffle_does_not():
    """The spherical mean (SH l = 0) commutes with R exactly; a fixed vertex permutation does not."""
    vertices = pixel_centres(4)
    sample = draw_sample(np.random.default_rng(0), 1, 3)
    l0 = torch.from_numpy(sh_fit_matrix(vertices, 8, "descoteaux07")[0])
    mean = lambda x: (x @ l0)[..., None].expand_as(x).movedim(1, -2)  # noqa: E731
    errors = equivariance_errors(mean, vertices, sample)
    assert errors["grid"] < 1e-28 and errors["voxel"] < 1e-20 and errors["both"] < 1e-20
    perm = torch.from_numpy(np.random.default_rng(1).permutation(len(vertices)))
    errors = equivariance_errors(lambda x: x[..., perm].movedim(1, -2), vertices, sample)
    assert errors["grid"] < 1e-28 and errors["voxel"] > 1e-3  # small: U[0, 1] inputs are mostly their mean
