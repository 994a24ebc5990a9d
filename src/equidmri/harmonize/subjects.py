"""Subjects of a two-site cohort: one subject scanned on site A (target) and on site B (reference).

A :class:`PairedSubject` holds the two acquisitions of one subject as :class:`equidmri.dmri.io.DWIData`
(scanner units, b-vectors in the voxel-axis frame, nominal b-values as each scanner reports them) and, where
known, B's signal without noise (simulations). :func:`split_cohort` divides a cohort into train / val / test
subjects and :func:`paired_subset` picks the training subjects whose pairing a semi-supervised method may use,
nested across fractions (the 2 % set is inside the 4 % set, ...).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from equidmri.dmri.io import DWIData

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train / val / test share of the subjects
PAIRED_PERCENTS = (2, 4, 10, 20, 30, 50, 80, 100)  # the semi-supervised rows (Sadegheih et al. 2023, WP1)
ROUNDING_SLACK = 1e-9  # so that e.g. 10 % of 50 subjects is 5, not ceil(5.000000000000001) = 6

__all__ = ["PAIRED_PERCENTS", "SPLIT_FRACTIONS", "PairedSubject", "paired_subset", "split_cohort"]


@dataclass(frozen=True, eq=False)
class PairedSubject:
    """One subject acquired on site A and on site B.

    Attributes
    ----------
    name : str
    a, b : DWIData
        The acquisitions, scanner units; each with its own protocol (nominal b-values in s/mm², b-vectors in
        the voxel-axis frame) and its ``mask`` (the same voxels on both sites).
    b_noise_free : ndarray, shape ``(X, Y, Z, N_B)`` float32, or None
        B's signal with every scanner effect but the noise (simulations only): for analysis. The harmonization
        target is ``b.dwi``, B as acquired, as the paper compares against acquired scans.
    tissue_fractions : ndarray, shape ``(X, Y, Z, 3)``, or None
        WM, GM, CSF fractions of a phantom subject; None for real data.
    """

    name: str
    a: DWIData
    b: DWIData
    b_noise_free: np.ndarray | None = None
    tissue_fractions: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.a.dwi.shape[:3] != self.b.dwi.shape[:3]:
            raise ValueError(
                f"sites A and B must share the grid, got {self.a.dwi.shape[:3]} and {self.b.dwi.shape[:3]}"
            )
        if self.b_noise_free is not None and self.b_noise_free.shape != self.b.dwi.shape:
            raise ValueError(f"b_noise_free must have shape {self.b.dwi.shape}, got {self.b_noise_free.shape}")

    @property
    def mask(self) -> np.ndarray:
        """Voxels inside both sites' masks, ``(X, Y, Z)`` bool (every voxel where neither has one)."""
        mask = np.ones(self.a.dwi.shape[:3], dtype=bool)
        for site in (self.a, self.b):
            if site.mask is not None:
                mask &= site.mask
        return mask


def split_cohort(
    subjects: Sequence[PairedSubject], fractions: tuple[float, float, float] = SPLIT_FRACTIONS
) -> dict[str, list[PairedSubject]]:
    """Divide a cohort, in its order, into ``train``, ``val`` and ``test`` subjects.

    The counts are ``round(f * n)`` for val and test and the rest for train; subjects of a simulated cohort are
    independent draws, so taking them in order is a random split.

    Raises
    ------
    ValueError
        If the fractions are negative or do not sum to 1, or a split would be empty.
    """
    if min(fractions) < 0 or not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {fractions}")
    n = len(subjects)
    n_val, n_test = round(fractions[1] * n), round(fractions[2] * n)
    counts = {"train": n - n_val - n_test, "val": n_val, "test": n_test}
    empty = [name for (name, count), share in zip(counts.items(), fractions) if share > 0 and count < 1]
    if empty:
        raise ValueError(f"{n} subjects leave the {', '.join(empty)} split(s) empty at fractions {fractions}")
    train_end, val_end = counts["train"], counts["train"] + n_val
    return {
        "train": list(subjects[:train_end]),
        "val": list(subjects[train_end:val_end]),
        "test": list(subjects[val_end:]),
    }


def paired_subset(train: Sequence[PairedSubject], percent: float, seed: int = 0) -> list[PairedSubject]:
    """The training subjects whose A and B scans count as paired at ``percent`` % pairing.

    One permutation of ``train`` (drawn from ``seed``) is cut after ``ceil(percent / 100 * n)`` subjects, so the
    subsets are nested: for ``p < q`` the ``p`` % subset lies inside the ``q`` % subset (same seed). At least one
    subject is paired for any ``percent > 0``; ``percent = 0`` pairs none.

    Returns
    -------
    list of PairedSubject
        In the order of ``train``.

    Raises
    ------
    ValueError
        If ``percent`` is outside [0, 100].
    """
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must lie in [0, 100], got {percent}")
    n = len(train)
    count = 0 if percent == 0 else max(1, math.ceil(percent / 100 * n - ROUNDING_SLACK))
    chosen = set(np.random.default_rng(seed).permutation(n)[:count].tolist())
    return [subject for index, subject in enumerate(train) if index in chosen]
