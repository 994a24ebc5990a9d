"""Gradient schemes: published vectors, condition numbers, validation and subset selection."""

import numpy as np
import pytest

from equidmri.microstructure.schemes import (
    JONES,
    SKARE,
    check_tensor_scheme,
    condition_number,
    count_distinct_directions,
    get_scheme,
    select_subset,
)


def test_schemes_are_unit_vectors_with_the_published_condition_numbers():
    for scheme in (SKARE, JONES):
        assert scheme.shape == (6, 3)
        np.testing.assert_allclose(np.linalg.norm(scheme, axis=1), 1.0, atol=1e-12)
    assert condition_number(SKARE) == pytest.approx(1.3233, abs=1e-3)  # 3-decimal Skare vectors (optimum 1.3229)
    assert condition_number(JONES) == pytest.approx(np.sqrt(2.5), abs=1e-9)  # icosahedral axes: 1.5811
    angles = np.degrees(np.arccos(np.abs(JONES @ JONES.T)[np.triu_indices(6, 1)]))
    np.testing.assert_allclose(angles, 63.4349, atol=1e-3)  # electrostatic optimum: all pairs equiangular


def test_subset_recovers_a_scheme_hidden_in_a_denser_acquisition_antipodally():
    rng = np.random.default_rng(0)
    others = rng.normal(size=(40, 3))
    others /= np.linalg.norm(others, axis=1, keepdims=True)
    acquired = np.vstack([others[:20], -SKARE[::-1], others[20:]])  # flipped and reversed
    chosen = select_subset(acquired, SKARE)
    np.testing.assert_array_equal(chosen, 20 + np.arange(6)[::-1])


def test_subset_never_reuses_a_direction():
    acquired = np.array([[0.0, 0.0, 1.0], [0.0, 0.1, 0.995], [1.0, 0.0, 0.0]])
    acquired /= np.linalg.norm(acquired, axis=1, keepdims=True)
    scheme = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])  # both nearest to row 0
    chosen = select_subset(acquired, scheme)
    assert chosen.tolist() == [0, 1]


def test_subset_refuses_too_few_directions():
    with pytest.raises(ValueError, match="cannot choose 6 directions among 5"):
        select_subset(SKARE[:5], SKARE)


def test_tensor_scheme_checks():
    assert check_tensor_scheme(JONES) == pytest.approx(1.5811, abs=1e-4)
    duplicated = np.vstack([SKARE[:5], -SKARE[0]])
    assert count_distinct_directions(duplicated) == 5
    with pytest.raises(ValueError, match="needs >= 6 non-collinear gradient directions, got 5"):
        check_tensor_scheme(duplicated)
    squeezed = SKARE * np.array([1.0, 1.0, 0.02])  # every direction close to the xy plane
    squeezed /= np.linalg.norm(squeezed, axis=1, keepdims=True)
    with pytest.raises(ValueError, match="degenerate gradient scheme: condition number"):
        check_tensor_scheme(squeezed)
    with pytest.raises(ValueError, match="scheme must be one of"):
        get_scheme("basser")
