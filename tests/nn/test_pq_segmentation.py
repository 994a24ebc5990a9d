"""Tests of the p×q-space segmentation network: one probability per voxel, invariant under joint rotations."""

import pytest
import torch
from test_pq_space import cube_rotations, rotate_field

from equidmri.nn.layers.pq_space import q_space_vectors
from equidmri.nn.models import PQSegmentationNet

HIDDEN = ("2x0e + 1x1o + 1x2e",) * 2
EDGE = 4  # voxels


@pytest.fixture
def q_vectors():
    bvecs = torch.nn.functional.normalize(torch.randn(8, 3, dtype=torch.float64), dim=-1)
    bvals = torch.tensor([0.0] + [1000.0] * 4 + [2000.0] * 3, dtype=torch.float64)
    return q_space_vectors(bvals, bvecs)


def rotate_volume(dwi, rotation):
    """``(B, Q, E, E, E)`` scalars rotated about the volume centre (see :func:`rotate_field`)."""
    return rotate_field(dwi[..., None], rotation, "1x0e")[..., 0]


@pytest.mark.parametrize("kernel", ["tp", "combined"])
def test_probabilities_rotate_with_a_joint_rotation_of_the_volume_and_the_q_vectors(kernel, q_vectors, float64):
    depth = 2 if kernel == "tp" else 1  # the paper's five layers with one kernel, three with the other
    net = PQSegmentationNet(q_vectors, pq_irreps=HIDDEN[:depth], p_irreps=HIDDEN[:depth], kernel=kernel)
    assert len(net.pq_layers) + len(net.p_layers) + 1 == 2 * depth + 1
    dwi = torch.rand(1, len(q_vectors), EDGE, EDGE, EDGE)
    probability = net(dwi)
    assert probability.shape == (1, EDGE, EDGE, EDGE)
    assert 0 < probability.min() and probability.max() < 1 and probability.std() > 1e-4
    for rotation in cube_rotations()[5::12]:  # two of the 24 grid rotations; the layer tests take all
        net.set_q_vectors(q_vectors @ rotation.T)
        rotated = net(rotate_volume(dwi, rotation))
        expected = rotate_volume(probability[:, None], rotation)[:, 0]
        torch.testing.assert_close(rotated, expected, atol=1e-12, rtol=0)
        net.set_q_vectors(q_vectors)  # the volume rotated, the q-vectors not: no longer the rotated map
        assert (net(rotate_volume(dwi, rotation)) - expected).abs().max() > 1e-6
    net.eval()  # the batch normalisation's running statistics instead of the batch's: still equivariant
    rotation = cube_rotations()[7]
    probability = net(dwi)
    net.set_q_vectors(q_vectors @ rotation.T)
    expected = rotate_volume(probability[:, None], rotation)[:, 0]
    torch.testing.assert_close(net(rotate_volume(dwi, rotation)), expected, atol=1e-12, rtol=0)


def test_batch_normalisation_is_optional_and_keeps_the_parameter_count_small(q_vectors):
    plain = PQSegmentationNet(q_vectors, pq_irreps=HIDDEN[:1], p_irreps=HIDDEN[:1], norm=False)
    normed = PQSegmentationNet(q_vectors, pq_irreps=HIDDEN[:1], p_irreps=HIDDEN[:1])
    extra = sum(p.numel() for p in normed.parameters()) - sum(p.numel() for p in plain.parameters())
    assert 0 < extra <= 4 * 2 * len(HIDDEN[:1] + HIDDEN[:1]) * 8  # affine weights and scalar biases per channel
    assert len(normed.pq_layers[0]) == 3 and len(plain.pq_layers[0]) == 2


def test_weights_transfer_to_a_network_built_on_other_q_vectors(q_vectors, float64):
    net = PQSegmentationNet(q_vectors, pq_irreps=HIDDEN[:1], p_irreps=HIDDEN[:1], kernel_size=1)
    other = PQSegmentationNet(q_vectors[:5], pq_irreps=HIDDEN[:1], p_irreps=HIDDEN[:1], kernel_size=1)
    other.load_state_dict(net.state_dict())
    net.set_q_vectors(q_vectors[:5])
    dwi = torch.rand(2, 5, 2, 3, 1)
    torch.testing.assert_close(other(dwi), net(dwi), atol=0, rtol=0)
    torch.testing.assert_close(torch.sigmoid(net.logits(dwi)), net(dwi), atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"expected dwi \(B, Q, X, Y, Z\)"):
        net(torch.zeros(5, 2, 2, 2))
    with pytest.raises(ValueError, match="need at least one p×q-space layer"):
        PQSegmentationNet(q_vectors, pq_irreps=())
