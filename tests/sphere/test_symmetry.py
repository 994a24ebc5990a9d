"""Tests of equidmri.sphere.symmetry: D4 on the HEALPix grid and the block eigenbasis of the filter Laplacian."""

import numpy as np
import pytest

from equidmri.sphere import graph, healpix, symmetry

CASES = [(1, True), (1, False), (2, True), (2, False), (4, True), (4, False), (8, True)]


def test_d4_rotations_form_a_group_with_orthogonal_irreps():
    rotations = symmetry.d4_rotations()
    products = np.einsum("gij,hjk->ghik", rotations, rotations).reshape(-1, 1, 9)
    table = np.argmin(np.abs(products - rotations.reshape(1, 8, 9)).sum(axis=-1), axis=1).reshape(8, 8)
    np.testing.assert_allclose(rotations[table], np.einsum("gij,hjk->ghik", rotations, rotations), atol=1e-15)
    assert len({tuple(row) for row in np.sort(table, axis=1)}) == 1  # every row a permutation of the group
    for name, rep in symmetry.d4_irreps().items():
        np.testing.assert_allclose(rep[table], np.einsum("gij,hjk->ghik", rep, rep), atol=1e-15, err_msg=name)
        characters = np.trace(rep, axis1=1, axis2=2)
        assert characters @ characters == pytest.approx(symmetry.GROUP_ORDER)  # irreducible (Serre §2.3)


@pytest.mark.parametrize(("nside", "hemi"), CASES)
def test_d4_permutations_are_a_representation_commuting_with_the_laplacian(nside, hemi):
    perms = symmetry.d4_permutations(nside, hemi)
    rotations = symmetry.d4_rotations()
    operator = graph.filter_laplacian(nside, hemisphere=hemi)
    for g, perm in enumerate(perms):
        np.testing.assert_array_equal(np.sort(perm), np.arange(perm.size))
        np.testing.assert_allclose(operator[np.ix_(perm, perm)], operator, atol=1e-13, rtol=0)
        for h in range(8):  # x[perm_h][perm_g] is x carried by h then by g: perm_{gh} = perm_h[perm_g]
            gh = np.argmin(np.abs(rotations - rotations[g] @ rotations[h]).sum(axis=(1, 2)))
            np.testing.assert_array_equal(perms[gh], perms[h][perm])


def test_d4_permutations_carry_signals_like_the_healpix_symmetries():
    quarter_turn = symmetry.d4_rotations()[1]
    np.testing.assert_array_equal(symmetry.d4_permutations(4, False)[1], healpix.symmetry_permutation(4, quarter_turn))


@pytest.mark.parametrize(("nside", "hemi"), CASES)
def test_change_of_basis_is_orthogonal_and_supported_on_orbits(nside, hemi):
    basis = symmetry.symmetric_eigh(nside, hemisphere=hemi)
    q = basis.change_of_basis
    np.testing.assert_allclose(q.T @ q, np.eye(q.shape[0]), atol=1e-12, rtol=0)
    assert (q != 0).sum(axis=0).max() <= symmetry.GROUP_ORDER
    images = np.argsort(symmetry.d4_permutations(nside, hemi), axis=1)  # images[g, v] = g v
    for column in q.T:
        support = np.flatnonzero(column)
        assert np.isin(support, images[:, support[0]]).all()  # within the orbit of one of its vertices


@pytest.mark.parametrize(("nside", "hemi"), CASES)
def test_block_eigenbasis_diagonalises_the_laplacian_with_its_spectrum(nside, hemi):
    basis = symmetry.symmetric_eigh(nside, hemisphere=hemi)
    operator = graph.filter_laplacian(nside, hemisphere=hemi)
    eigvecs = basis.eigenvectors()
    np.testing.assert_allclose(eigvecs.T @ operator @ eigvecs, np.diag(basis.eigvals), atol=1e-10, rtol=0)
    expected = graph.laplacian_eigh(nside, hemisphere=hemi)[0]
    np.testing.assert_allclose(np.sort(basis.eigvals), expected, atol=1e-10, rtol=0)
    assert sum(basis.block_sizes) == operator.shape[0]


@pytest.mark.parametrize(("nside", "hemi"), CASES)
def test_sparse_pieces_rebuild_the_change_of_basis(nside, hemi):
    """T on the regular orbits and the axis transform are Q restricted to their vertices, blocks in order."""
    basis = symmetry.symmetric_eigh(nside, hemisphere=hemi)
    q = basis.change_of_basis
    n_orbits = basis.orbit_vertices.shape[0]
    coefficients = np.random.randn(q.shape[0], 3)
    x = q @ coefficients
    regular = np.einsum("fg,ogc->foc", basis.orbit_transform, x[basis.orbit_vertices]).reshape(8 * n_orbits, 3)
    axis = basis.axis_transform.T @ x[basis.axis_vertices]
    starts = np.cumsum((0,) + basis.block_sizes)
    regular_starts = np.cumsum((0,) + basis.block_regular)
    axis_starts = np.cumsum((0,) + tuple(np.subtract(basis.block_sizes, basis.block_regular)))
    for k in range(len(symmetry.BLOCKS)):
        block = coefficients[starts[k] : starts[k + 1]]
        n_regular = basis.block_regular[k]
        np.testing.assert_allclose(block[:n_regular], regular[regular_starts[k] : regular_starts[k + 1]], atol=1e-12)
        np.testing.assert_allclose(block[n_regular:], axis[axis_starts[k] : axis_starts[k + 1]], atol=1e-12)


@pytest.mark.slow
def test_block_eigenbasis_at_nside_16():
    """V+ = 1536; the filter Laplacian itself takes ~30 s here (its lambda_max is a dense eigen-solve)."""
    basis = symmetry.symmetric_eigh(16)
    operator = graph.filter_laplacian(16)
    eigvecs = basis.eigenvectors()
    np.testing.assert_allclose(eigvecs.T @ operator @ eigvecs, np.diag(basis.eigvals), atol=1e-10, rtol=0)
    assert (basis.change_of_basis != 0).sum(axis=0).max() <= symmetry.GROUP_ORDER


@pytest.mark.parametrize(
    ("nside", "hemi", "n_regular", "n_axis"), [(1, True, 0, 6), (2, False, 6, 0), (8, True, 40, 64)]
)
def test_orbit_counts(nside, hemi, n_regular, n_axis):
    basis = symmetry.symmetric_eigh(nside, hemisphere=hemi)
    assert basis.orbit_vertices.shape == (n_regular, 8) and basis.axis_vertices.shape == (n_axis,)
    assert basis.block_sizes[4] == basis.block_sizes[5]  # the two partners of E


def test_the_two_partners_of_e_have_identical_blocks():
    basis = symmetry.symmetric_eigh(4)
    q, operator = basis.change_of_basis, graph.filter_laplacian(4)
    starts = np.cumsum((0,) + basis.block_sizes)
    first, second = (q[:, starts[k] : starts[k + 1]] for k in (4, 5))
    np.testing.assert_allclose(first.T @ operator @ first, second.T @ operator @ second, atol=1e-13, rtol=0)
    assert np.abs(first.T @ operator @ second).max() < 1e-13


def test_symmetric_eigh_is_cached_and_read_only():
    basis = symmetry.symmetric_eigh(2)
    assert symmetry.symmetric_eigh(2, sigma=0.4) is not basis  # cached on the given sigma, like laplacian_eigh
    assert symmetry.symmetric_eigh(2) is basis
    assert not basis.change_of_basis.flags.writeable and not basis.eigvals.flags.writeable
    assert not any(w.flags.writeable for w in basis.block_eigvecs)


def test_custom_sigma_gives_that_laplacian_spectrum():
    basis = symmetry.symmetric_eigh(2, sigma=1.0)
    expected = graph.laplacian_eigh(2, sigma=1.0)[0]
    np.testing.assert_allclose(np.sort(basis.eigvals), expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("nside", (0, 3))
def test_symmetric_eigh_rejects_bad_nsides(nside):
    with pytest.raises(ValueError, match="nside must be a power of two"):
        symmetry.symmetric_eigh(nside)


def test_symmetric_eigh_rejects_non_positive_sigma():
    with pytest.raises(ValueError, match="sigma must be > 0"):
        symmetry.symmetric_eigh(2, sigma=0.0)
