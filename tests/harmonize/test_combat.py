"""Tests of ComBat on maps (equidmri.harmonize.combat): a known site effect is removed; the missing extra is named."""

import sys

import numpy as np
import pytest

from equidmri.extras import MissingExtraError
from equidmri.harmonize.combat import combat_fit

VOXELS = 400
SHIFT, GAIN = 0.04, 1.2  # site A's FA = SHIFT + GAIN x site B's FA
TEMPLATE = np.random.default_rng(42).uniform(0.2, 0.6, VOXELS)  # the voxels' mean FA over subjects


def _fa_maps(subjects: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paired FA maps ``(subjects, VOXELS)``: B measures each subject's FA, A the same with an affine site effect;
    both with measurement noise."""
    fa = TEMPLATE + 0.05 * rng.standard_normal((subjects, VOXELS))  # between-subject variability
    b = fa + 0.01 * rng.standard_normal(fa.shape)
    a = SHIFT + GAIN * fa + 0.01 * rng.standard_normal(fa.shape)
    return a, b


def test_combat_removes_an_additive_and_multiplicative_site_effect_on_fa_maps():
    rng = np.random.default_rng(0)
    train_a, train_b = _fa_maps(40, rng)
    combat = combat_fit(np.concatenate([train_a, train_b]), ["A"] * 40 + ["B"] * 40)
    assert combat.sites == ("A", "B")
    # the variance ratio of the sites is the gain squared
    assert np.median(combat.delta[0] / combat.delta[1]) == pytest.approx(GAIN**2, rel=0.15)
    test_a, test_b = _fa_maps(10, rng)
    mapped = combat.transfer(test_a, "A", "B")
    before, after = np.mean((test_a - test_b) ** 2), np.mean((mapped - test_b) ** 2)
    assert after < 0.05 * before
    assert abs(np.mean(mapped - test_b)) < 0.01  # the additive part is gone
    assert np.median(mapped.std(axis=0) / test_b.std(axis=0)) == pytest.approx(1.0, abs=0.2)  # and the gain
    assert np.allclose(combat.transfer(mapped, "B", "A"), test_a)  # B -> A undoes A -> B


def test_combat_refuses_one_site_unfitted_sites_and_wrong_shapes():
    rng = np.random.default_rng(1)
    a, b = _fa_maps(3, rng)
    with pytest.raises(ValueError, match="two sites"):
        combat_fit(a, ["A"] * 3)
    with pytest.raises(ValueError, match="subjects"):
        combat_fit(a, ["A", "B"])
    combat = combat_fit(np.concatenate([a, b]), ["A"] * 3 + ["B"] * 3)
    with pytest.raises(ValueError, match="was not fitted"):
        combat.transfer(a, "A", "C")
    with pytest.raises(ValueError, match="maps must be"):
        combat.transfer(a[:, :10], "A", "B")


def test_a_missing_neurocombat_names_the_bench_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "neuroCombat", None)  # import neuroCombat now raises ImportError
    a, b = _fa_maps(3, np.random.default_rng(2))
    with pytest.raises(
        MissingExtraError, match=r"neuroCombat, which is not installed: pip install 'equidmri\[bench\]'"
    ):
        combat_fit(np.concatenate([a, b]), ["A"] * 3 + ["B"] * 3)
