"""Tests of the p×q-space layers (Müller et al., arXiv:2102.06942): joint SE(3) equivariance, and its failure
under rotations of p or q alone.

Convention: identity affine, isotropic voxels; voxel index (i, j, k) along the tensor axes X, Y, Z of
``(B, Q, X, Y, Z, D)`` is the point (x, y, z), and the q-vectors live in the same frame. A rotation R about the
volume's centre c moves the feature at voxel i to R (i - c) + c and transforms it by its Wigner-D
(``Irreps.D_from_matrix``); the q-vectors become q Rᵀ.
"""

import importlib
import itertools
import sys

import pytest
import torch
from e3nn import o3

from equidmri.extras import MissingExtraError
from equidmri.nn.layers.pq_pointwise import QLengthPool, gated
from equidmri.nn.layers.pq_space import PQConv, p_offsets, q_space_vectors

IRREPS_IN = "1x0e + 1x1o"
IRREPS_OUT = "1x0e + 1x1o + 1x1e + 1x2e"
EDGE = 5  # voxels
KERNELS = ("tp", "combined")


def cube_rotations() -> list[torch.Tensor]:
    """The 24 rotations of the voxel grid: signed permutation matrices with determinant +1, float64."""
    rotations = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            r = torch.zeros(3, 3, dtype=torch.float64)
            r[range(3), perm] = torch.tensor(signs, dtype=torch.float64)
            if torch.det(r) > 0:
                rotations.append(r)
    return rotations


def rotate_field(x: torch.Tensor, rotation: torch.Tensor, irreps: str) -> torch.Tensor:
    """``(B, Q, E, E, E, D)`` field rotated about the volume centre: out(i') = D(R) x(Rᵀ (i' - c) + c)."""
    edge = x.shape[2]
    centre = (edge - 1) / 2
    grid = torch.stack(torch.meshgrid(*[torch.arange(edge, dtype=torch.float64)] * 3, indexing="ij"), dim=-1)
    source = ((grid - centre) @ rotation + centre).round().long()  # row vector (i' - c) @ R == Rᵀ (i' - c)
    moved = x[:, :, source[..., 0], source[..., 1], source[..., 2]]
    return moved @ o3.Irreps(irreps).D_from_matrix(rotation.to(x.dtype)).T


@pytest.fixture
def q_vectors():
    """12 q-samples: one b = 0 and 11 random directions on the b = 1000 and 2000 s/mm² shells, float64."""
    bvecs = torch.nn.functional.normalize(torch.randn(12, 3, dtype=torch.float64), dim=-1)
    bvals = torch.tensor([0.0] + [1000.0] * 6 + [2000.0] * 5, dtype=torch.float64)
    return q_space_vectors(bvals, bvecs)


def test_q_space_vectors_scale_unit_bvecs_by_the_root_of_b():
    bvecs = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.6, 0.8, 0.0]])
    q = q_space_vectors(torch.tensor([0.0, 1000.0, 3000.0]), bvecs)
    torch.testing.assert_close(q.norm(dim=-1), torch.tensor([0.0, 1.0, 3**0.5], dtype=torch.float64))
    torch.testing.assert_close(q[2] / 3**0.5, bvecs[2].double())
    with pytest.raises(ValueError, match=r"expected bvals \(N,\) and bvecs \(N, 3\)"):
        q_space_vectors(torch.zeros(3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="b-values must be >= 0"):
        q_space_vectors(torch.tensor([-5.0]), torch.ones(1, 3))


def test_the_grid_rotations_are_the_24_of_the_cube_and_permute_the_kernel_offsets():
    rotations = cube_rotations()
    assert len({tuple(r.flatten().tolist()) for r in rotations}) == 24
    offsets = p_offsets(3)
    for r in rotations:
        assert {tuple(v) for v in (offsets @ r.T).tolist()} == {tuple(v) for v in offsets.tolist()}


@pytest.mark.parametrize("kernel", KERNELS)
def test_layer_commutes_with_every_joint_grid_rotation_of_p_and_q(kernel, q_vectors, float64):
    layer = PQConv(IRREPS_IN, IRREPS_OUT, q_vectors, kernel=kernel)
    x = torch.randn(1, len(q_vectors), EDGE, EDGE, EDGE, layer.irreps_in.dim)
    out = layer(x)
    assert out.abs().max() > 0.1
    for rotation in cube_rotations():
        layer.set_q_vectors(q_vectors @ rotation.T)
        rotated_out = layer(rotate_field(x, rotation, IRREPS_IN))
        expected = rotate_field(out, rotation, IRREPS_OUT)
        torch.testing.assert_close(rotated_out[..., :1], expected[..., :1], atol=1e-10, rtol=0)  # scalars: equal
        torch.testing.assert_close(rotated_out, expected, atol=1e-10, rtol=0)  # l > 0: by their Wigner-D


@pytest.mark.parametrize("kernel", KERNELS)
def test_voxelwise_layer_commutes_with_continuous_rotations_of_q(kernel, q_vectors):
    q = q_vectors.float()
    layer = PQConv(IRREPS_IN, IRREPS_OUT, q, kernel=kernel, kernel_size=1)
    x = torch.randn(2, len(q), 2, 1, 1, layer.irreps_in.dim)
    out = layer(x)
    for rotation in o3.rand_matrix(5):
        layer.set_q_vectors(q @ rotation.T)
        rotated_out = layer(x @ layer.irreps_in.D_from_matrix(rotation).T)
        expected = out @ layer.irreps_out.D_from_matrix(rotation).T
        assert (rotated_out - expected).abs().max() < 3e-5 * out.abs().max()  # float32; measured 1.3e-5
    layer.set_q_vectors(q)
    torch.testing.assert_close(layer.double()(x.double()), out.double(), atol=3e-5 * out.abs().max().item(), rtol=0)


def test_layer_commutes_with_translations(q_vectors, float64):
    layer = PQConv(IRREPS_IN, IRREPS_OUT, q_vectors)
    x = torch.randn(1, len(q_vectors), 7, 6, 6, layer.irreps_in.dim)
    out, shifted = layer(x), layer(x[:, :, 2:, 1:])  # the volume moved by (-2, -1, 0) voxels
    interior = (slice(None), slice(None), slice(1, -1), slice(1, -1), slice(1, -1))  # away from the padding
    torch.testing.assert_close(shifted[interior], out[:, :, 2:, 1:][interior], atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("kernel", "irreps"),
    # scalars in and out: the tp kernel's l_f = 0 paths Y_1(Δp)·Y_1(Δq) couple p and q; the combined kernel's
    # l_f = 0 part, Y_0(Δp - Δq), is a constant, so it needs vectors to couple them
    [("tp", "2x0e"), ("combined", "1x0e + 1x1o")],
)
def test_rotating_p_alone_or_q_alone_does_not_commute(kernel, irreps, q_vectors, float64):
    layer = PQConv(irreps, irreps, q_vectors, kernel=kernel)
    x = torch.randn(1, len(q_vectors), EDGE, EDGE, EDGE, layer.irreps_in.dim)
    out = layer(x)
    rotation = cube_rotations()[5]
    expected = rotate_field(out, rotation, irreps)
    p_only = layer(rotate_field(x, rotation, irreps))  # q-vectors left unrotated
    layer.set_q_vectors(q_vectors @ rotation.T)
    q_only = layer(x @ layer.irreps_in.D_from_matrix(rotation).T)  # voxels left in place
    joint = layer(rotate_field(x, rotation, irreps))
    torch.testing.assert_close(joint, expected, atol=1e-10, rtol=0)
    for wrong in (p_only, q_only):
        assert (wrong - expected).norm() > 0.05 * expected.norm()


def test_the_separable_methods_and_the_dense_kernel_give_the_same_output(q_vectors, float64):
    options = {"lmax_p": 2, "lmax_q": 1, "n_radial_p": 1, "n_radial_q": 2}  # K1 != K2: catches index mix-ups
    dense = PQConv(IRREPS_IN, IRREPS_OUT, q_vectors, method="dense", **options)
    x = torch.randn(2, len(q_vectors), 3, 3, 4, dense.irreps_in.dim)
    expected = dense(x)
    for method in ("pwq", "pqw"):
        separable = PQConv(IRREPS_IN, IRREPS_OUT, q_vectors, method=method, **options)
        separable.load_state_dict(dense.state_dict())
        torch.testing.assert_close(separable(x), expected, atol=1e-12, rtol=0)


def test_the_default_method_has_the_fewest_multiply_adds():
    q_vectors = torch.randn(90, 3)  # at 12 q-samples the dense kernel is the cheapest for the first layer
    first, hidden = PQConv("1x0e", "8x0e + 2x1o", q_vectors), PQConv("8x0e + 2x1o", "8x0e + 2x1o", q_vectors)
    assert (first.method, hidden.method) == ("pqw", "pwq")
    for layer in (first, hidden):
        assert layer.macs_per_voxel(layer.method) == min(layer.macs_per_voxel(m) for m in ("pwq", "pqw", "dense"))
    assert PQConv("1x0e", "1x0e", q_vectors, kernel="combined").method == "dense"


def test_combined_kernel_is_the_sh_of_the_combined_offset(q_vectors, float64):
    """With one radial function each, a scalar -> vector combined kernel is a multiple of Y_1(Δp - Δq)."""
    layer = PQConv("1x0e", "1x1o", q_vectors, kernel="combined", n_radial_p=1, n_radial_q=1)
    kernel = layer.dense_kernel()[..., 0, :]  # (27, Q_o, Q_i, 3)
    unit = torch.nn.functional.normalize(q_vectors, dim=-1)
    offset = p_offsets(3)[:, None, None] - (unit[:, None] - unit[None, :])[None]  # Δp - Δq
    direction = o3.spherical_harmonics(1, offset, normalize=True)
    nonzero = offset.norm(dim=-1) > 1e-9  # Y_1(0) = 0
    scale = (kernel * direction).sum(-1)[nonzero] / (direction * direction).sum(-1)[nonzero]
    assert scale.std() < 1e-12 * scale.abs().mean()
    torch.testing.assert_close(kernel, scale.mean() * direction, atol=1e-12, rtol=0)


def test_state_dict_holds_only_weights_and_transfers_to_other_q_vectors(q_vectors, float64):
    layer = PQConv(IRREPS_IN, IRREPS_OUT, q_vectors)
    own = {key for key in layer.state_dict() if not key.startswith(("tp._compiled", "tp.output_mask"))}  # e3nn
    assert own == {"tp.weight", "bias"}  # no geometry: it is rebuilt from the q-vectors
    other_q = q_vectors[:7] @ o3.rand_matrix(dtype=torch.float64).T
    fresh = PQConv(IRREPS_IN, IRREPS_OUT, other_q)
    fresh.load_state_dict(layer.state_dict())
    layer.set_q_vectors(other_q)
    x = torch.randn(1, 7, 3, 3, 3, layer.irreps_in.dim)
    torch.testing.assert_close(fresh(x), layer(x), atol=0, rtol=0)


def test_q_length_pool_weights_samples_by_their_q_length_only(q_vectors, float64):
    pool = QLengthPool(IRREPS_OUT, q_vectors)
    x = torch.randn(1, len(q_vectors), 2, 2, 2, pool.irreps.dim)
    rotation = o3.rand_matrix(dtype=torch.float64)
    out = pool(x)
    pool.set_q_vectors(q_vectors @ rotation.T)
    d = pool.irreps.D_from_matrix(rotation)
    torch.testing.assert_close(pool(x @ d.T), out @ d.T, atol=1e-12, rtol=0)
    permutation = torch.randperm(len(q_vectors))
    pool.set_q_vectors(q_vectors[permutation])
    torch.testing.assert_close(pool(x[:, permutation]), out, atol=1e-12, rtol=0)


def test_bad_arguments_raise(q_vectors):
    with pytest.raises(ValueError, match=r"q_vectors must have shape \(Q, 3\)"):
        PQConv("1x0e", "1x0e", torch.zeros(4, 2))
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        PQConv("1x0e", "1x0e", q_vectors, kernel_size=2)
    with pytest.raises(ValueError, match="kernel must be one of"):
        PQConv("1x0e", "1x0e", q_vectors, kernel="diff")
    with pytest.raises(ValueError, match="'dense' for the combined kernel"):
        PQConv("1x0e", "1x0e", q_vectors, kernel="combined", method="pwq")
    with pytest.raises(ValueError, match="need lmax >= 0 and >= 1 radial function"):
        PQConv("1x0e", "1x0e", q_vectors, n_radial_q=0)
    with pytest.raises(ValueError, match=r"reaches the output irreps \['4e'\]"):
        PQConv("1x0e", "1x0e + 1x4e", q_vectors)
    layer = PQConv("1x0e", "1x0e", q_vectors.float())
    with pytest.raises(ValueError, match=r"expected \(B, 12, X, Y, Z, 1\)"):
        layer(torch.zeros(1, 11, 3, 3, 3, 1))
    with pytest.raises(ValueError, match=r"expected \(B, 12, X, Y, Z, 4\)"):
        QLengthPool("1x0e + 1x1o", q_vectors.float())(torch.zeros(1, 12, 2, 2, 2, 3))
    with pytest.raises(ValueError, match="0e scalars only"):
        gated("1x0o + 1x1o")


def test_without_e3nn_the_layers_name_the_lesions_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "e3nn", None)  # import e3nn now raises ImportError
    monkeypatch.delitem(sys.modules, "equidmri.nn.layers.pq_space")  # restored after the test
    with pytest.raises(MissingExtraError, match=r"needs e3nn.*pip install 'equidmri\[lesions\]'"):
        importlib.import_module("equidmri.nn.layers.pq_space")
