"""Tests of equidmri.sphere.graph: k-NN graph, rescaled Laplacian, L+ and SHD Theorem 1."""

import numpy as np
import pytest

from equidmri.sphere import graph, healpix, hemisphere

NSIDES = (1, 2, 4, 8)


@pytest.mark.parametrize("nside", NSIDES)
def test_adjacency_is_symmetric_antipodally_invariant_and_loop_free(nside):
    weights = graph.adjacency(nside)
    anti = healpix.antipode_index(nside)
    np.testing.assert_array_equal(weights, weights.T)
    np.testing.assert_allclose(weights[np.ix_(anti, anti)], weights, atol=1e-12, rtol=0)
    np.testing.assert_array_equal(np.diag(weights), 0.0)
    assert ((weights > 0).sum(axis=1) >= graph.N_NEIGHBOURS).all()


def test_adjacency_weights_are_gaussian_in_chord_distance():
    nside, sigma = 4, 0.3
    weights = graph.adjacency(nside, sigma=sigma)
    centres = healpix.pixel_centres(nside)
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    edges = weights > 0
    np.testing.assert_allclose(weights[edges], 2.0 ** (-((dist[edges] / sigma) ** 2)), rtol=1e-14, atol=0)
    assert graph.default_sigma(8) == pytest.approx(0.1)


def test_adjacency_keeps_the_k_nearest_neighbours():
    nside, k = 2, 3
    weights = graph.adjacency(nside, n_neighbours=k)
    centres = healpix.pixel_centres(nside)
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    nearest = np.argsort(dist, axis=1)[:, 0]
    assert np.all(weights[np.arange(dist.shape[0]), nearest] > 0)
    kth = np.sort(dist, axis=1)[:, k - 1]
    far = (dist > kth[:, None] * (1 + 1e-6)) & (dist > kth[None, :] * (1 + 1e-6))  # beyond k-NN both ways
    np.testing.assert_array_equal(weights[far], 0.0)


@pytest.mark.parametrize("nside", (1, 2, 4))
def test_rescaled_laplacian_spectrum_is_minus_one_to_one(nside):
    evals = np.linalg.eigvalsh(graph.rescaled_laplacian(nside))
    assert evals[-1] == pytest.approx(1.0, abs=1e-12)
    assert evals[0] == pytest.approx(-1.0, abs=1e-12)  # normalised Laplacian: eigenvalue 0 -> -1


@pytest.mark.parametrize("nside", NSIDES)
def test_hemispherical_laplacian_is_symmetric(nside):
    lplus = graph.chebyshev_stack(nside, 6, hemisphere=True)[1]  # T_1(L+) = L+, cached for Theorem 1 below
    if nside < 8:  # rebuilding L+ at nside 8 costs an extra 768 x 768 eigen-solve
        np.testing.assert_array_equal(lplus, graph.hemisphere_laplacian(nside))
    assert lplus.shape == (healpix.npix(nside) // 2,) * 2
    np.testing.assert_allclose(lplus, lplus.T, atol=1e-14, rtol=0)


@pytest.mark.parametrize("nside", NSIDES)
def test_hemispherical_chebyshev_stack_matches_full_sphere_theorem_1(nside):
    """SHD Theorem 1: (T_k(L~) f)(p) = (T_k(L+) f+)(p) for antipodally symmetric f and p in V+."""
    cheb_order = 6
    full = graph.chebyshev_stack(nside, cheb_order, hemisphere=False)
    hemi = graph.chebyshev_stack(nside, cheb_order, hemisphere=True)
    pixels, rep = hemisphere.hemisphere_pixels(nside), hemisphere.representative(nside)
    f_plus = np.random.randn(pixels.size, 3)
    f = f_plus[rep]  # antipodally symmetric signal on the full sphere
    np.testing.assert_allclose(f, f[healpix.antipode_index(nside)], atol=0, rtol=0)
    for k in range(cheb_order):
        np.testing.assert_allclose(hemi[k] @ f_plus, (full[k] @ f)[pixels], atol=1e-10, rtol=0, err_msg=f"k={k}")


@pytest.mark.parametrize("hemi", (True, False))
def test_chebyshev_stack_is_chebyshev_of_the_spectrum(hemi):
    nside, cheb_order = 2, 5
    operator = graph.hemisphere_laplacian(nside) if hemi else graph.rescaled_laplacian(nside)
    evals, evecs = np.linalg.eigh(operator)
    assert np.abs(evals).max() <= 1 + 1e-12
    stack = graph.chebyshev_stack(nside, cheb_order, hemisphere=hemi)
    theta = np.arccos(np.clip(evals, -1.0, 1.0))
    for k in range(cheb_order):
        expected = (evecs * np.cos(k * theta)) @ evecs.T  # T_k(cos t) = cos(k t)
        np.testing.assert_allclose(stack[k], expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("hemi", (True, False))
def test_laplacian_eigh_diagonalises_the_operator(hemi):
    nside = 4
    operator = graph.hemisphere_laplacian(nside) if hemi else graph.rescaled_laplacian(nside)
    evals, evecs = graph.laplacian_eigh(nside, hemisphere=hemi)
    assert evals.min() >= -1.0 and evals.max() <= 1.0 and np.all(np.diff(evals) >= 0)
    np.testing.assert_allclose((evecs * evals) @ evecs.T, operator, atol=1e-12, rtol=0)
    np.testing.assert_allclose(evecs.T @ evecs, np.eye(evals.size), atol=1e-12, rtol=0)
    assert graph.laplacian_eigh(nside, hemisphere=hemi)[1] is evecs and not evecs.flags.writeable


@pytest.mark.parametrize("hemi", (True, False))
def test_spectral_chebyshev_response_rebuilds_the_chebyshev_stack(hemi):
    evals, evecs = graph.laplacian_eigh(2, hemisphere=hemi)
    response = graph.chebyshev_polynomials(evals, 5)
    stack = graph.chebyshev_stack(2, 5, hemisphere=hemi)
    for k in range(5):
        np.testing.assert_allclose((evecs * response[k]) @ evecs.T, stack[k], atol=1e-10, rtol=0)


def test_chebyshev_polynomials_are_cos_k_arccos():
    x = np.linspace(-1.0, 1.0, 41)
    expected = np.cos(np.arange(7)[:, None] * np.arccos(x)[None, :])
    np.testing.assert_allclose(graph.chebyshev_polynomials(x, 7), expected, atol=1e-12, rtol=0)
    np.testing.assert_array_equal(graph.chebyshev_polynomials(x, 1), np.ones((1, 41)))


def test_chebyshev_polynomials_rejects_a_zero_order():
    with pytest.raises(ValueError, match="cheb_order must be an int >= 1"):
        graph.chebyshev_polynomials(np.zeros(3), 0)


def test_chebyshev_stack_is_cached_and_read_only():
    a = graph.chebyshev_stack(2, 3)
    assert graph.chebyshev_stack(2, 3) is a
    assert not a.flags.writeable
    np.testing.assert_array_equal(a[0], np.eye(24))


def test_chebyshev_stack_order_one_is_the_identity():
    np.testing.assert_array_equal(graph.chebyshev_stack(4, 1, hemisphere=False)[0], np.eye(192))


def test_custom_sigma_changes_the_operator():
    default = graph.chebyshev_stack(2, 2)
    wide = graph.chebyshev_stack(2, 2, sigma=1.0)
    assert np.abs(default[1] - wide[1]).max() > 1e-3
    np.testing.assert_array_equal(graph.chebyshev_stack(2, 2, sigma=0.4)[1], default[1])  # 0.8 / nside


@pytest.mark.parametrize("sigma", (0.0, -0.1))
def test_adjacency_rejects_non_positive_sigma(sigma):
    with pytest.raises(ValueError, match="sigma must be > 0"):
        graph.adjacency(2, sigma=sigma)


@pytest.mark.parametrize("n_neighbours", (0, 48))
def test_adjacency_rejects_impossible_neighbour_counts(n_neighbours):
    with pytest.raises(ValueError, match=r"n_neighbours must be in \[1, 47\]"):
        graph.adjacency(2, n_neighbours=n_neighbours)


@pytest.mark.parametrize("cheb_order", (0, -1, 2.0, True))
def test_chebyshev_stack_rejects_bad_orders(cheb_order):
    with pytest.raises(ValueError, match="cheb_order must be an int >= 1"):
        graph.chebyshev_stack(2, cheb_order)
