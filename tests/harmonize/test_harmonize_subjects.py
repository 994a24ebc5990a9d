"""Tests of equidmri.harmonize.subjects: splits and nested paired subsets."""

from dataclasses import replace

import pytest

from equidmri.harmonize.subjects import PAIRED_PERCENTS, paired_subset, split_cohort


def test_split_is_60_20_20_in_order(gain_cohort):
    splits = split_cohort(gain_cohort)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [6, 2, 2]
    assert [s.name for k in ("train", "val", "test") for s in splits[k]] == [s.name for s in gain_cohort]


def test_split_refuses_an_empty_split(gain_cohort):
    with pytest.raises(ValueError, match="leave the val, test split"):
        split_cohort(gain_cohort[:2])
    with pytest.raises(ValueError, match="sum to 1"):
        split_cohort(gain_cohort, (0.5, 0.2, 0.2))


def test_paired_subsets_are_nested_and_sized(gain_cohort):
    train = [replace(s, name=f"s{i}") for i, s in enumerate(gain_cohort * 5)]  # 50: 2 % is one subject, 4 % two
    previous: set[str] = set()
    for percent in PAIRED_PERCENTS:
        chosen = [s.name for s in paired_subset(train, percent, seed=3)]
        assert len(chosen) == -(-percent * len(train) // 100)
        assert previous <= set(chosen)
        previous = set(chosen)
    assert len(previous) == len(train) and paired_subset(train, 0) == []
    assert paired_subset(train, 10, seed=3) != paired_subset(train, 10, seed=4)


def test_paired_subset_refuses_a_percent_outside_0_100(gain_cohort):
    with pytest.raises(ValueError, match=r"percent must lie in \[0, 100\]"):
        paired_subset(gain_cohort, 120)
