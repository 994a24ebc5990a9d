"""Harmonizers that work on per-shell SH coefficients of the attenuation: the baseline and RISH.

Both map a site-A volume onto site B's protocol: each shell's attenuation ``S / S0`` is fitted with SH on A's
directions (:mod:`equidmri.harmonize.shells`), the coefficients are changed (not at all for the baseline;
scaled per degree for RISH) and evaluated at B's directions of the same shell; the result is multiplied back by
A's mean b=0 signal, and B's b=0 volumes are that mean. So the harmonized attenuation is what they change,
and what :mod:`equidmri.harmonize.metrics` compares.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from dipy.core.gradients import GradientTable

from equidmri.dmri.gradients import LMAX_CAP, find_shells, make_gtab
from equidmri.harmonize.shells import ShellPair, attenuation, match_shells, mean_b0, rish_features
from equidmri.harmonize.subjects import PairedSubject
from equidmri.sphere.sh import check_lmax

logger = logging.getLogger(__name__)

MIN_MAP_SUBJECTS = 3  # a voxel of a RISH scale map needs this many training subjects inside their masks
MIN_RISH_RATIO = 1e-3  # a voxel's mean site-A RISH below this share of the global mean uses the global scale
SCALE_RANGE = (0.0, 10.0)  # RISH scale factors are clipped to this range (noise-only degrees of tiny energy)

__all__ = ["BaselineHarmonizer", "HarmonizedDWI", "RISHHarmonizer", "SHHarmonizer"]


@dataclass(frozen=True, eq=False)
class HarmonizedDWI:
    """A site-A volume on site B's protocol.

    Attributes
    ----------
    dwi : ndarray, shape ``(X, Y, Z, N)`` float32
        Scanner units of A's b=0 signal.
    bvals : ndarray, shape ``(N,)``
        B's nominal b-values (s/mm²) of its b=0 volumes and of the shells A has.
    bvecs : ndarray, shape ``(N, 3)``
        B's b-vectors, voxel-axis frame.
    """

    dwi: np.ndarray
    bvals: np.ndarray
    bvecs: np.ndarray

    def gtab(self) -> GradientTable:
        """dipy ``GradientTable`` of the output protocol."""
        return make_gtab(self.bvals, self.bvecs)


class SHHarmonizer:
    """Resample site A onto site B's directions per shell through SH; subclasses change the coefficients.

    Parameters
    ----------
    lmax : int
        Highest even SH degree of the per-shell fits (lower where a shell has too few directions).

    Raises
    ------
    ValueError
        If ``lmax`` is odd or negative.
    """

    def __init__(self, *, lmax: int = LMAX_CAP) -> None:
        self.lmax = check_lmax(lmax)
        self.reference_bvals: np.ndarray | None = None
        self.reference_bvecs: np.ndarray | None = None

    def fit(self, train: Sequence[PairedSubject]) -> SHHarmonizer:
        """Learn from the training subjects; B's protocol (shared by every subject) becomes the output protocol.

        Raises
        ------
        ValueError
            If ``train`` is empty or the subjects' site-B protocols differ.
        """
        if not train:
            raise ValueError("fit needs at least one training subject")
        bvals, bvecs = train[0].b.bvals, train[0].b.bvecs
        for subject in train[1:]:
            if subject.b.bvals.shape != bvals.shape or not (
                np.allclose(subject.b.bvals, bvals) and np.allclose(subject.b.bvecs, bvecs)
            ):
                raise ValueError(f"subject {subject.name} has another site-B protocol than {train[0].name}")
        self.reference_bvals, self.reference_bvecs = bvals.copy(), bvecs.copy()
        self._learn(train)
        return self

    def apply(self, dwi: np.ndarray, gtab: GradientTable) -> HarmonizedDWI:
        """Harmonize a site-A volume onto B's protocol.

        Parameters
        ----------
        dwi : ndarray, shape ``(X, Y, Z, N)``
            Site-A signal, scanner units, with at least one b=0 volume.
        gtab : GradientTable
            Its protocol (nominal b-values in s/mm², b-vectors in the voxel-axis frame).

        Returns
        -------
        HarmonizedDWI
            B's b=0 volumes and B's volumes of every shell A has.

        Raises
        ------
        RuntimeError
            If the harmonizer has not been fitted.
        ValueError
            If ``dwi`` is not 4D or does not match ``gtab``, has no b=0 volume, or a shell of A is not in B's
            protocol.
        """
        if self.reference_bvals is None:
            raise RuntimeError(f"{type(self).__name__} must be fitted before apply")
        dwi = np.asarray(dwi)
        if dwi.ndim != 4 or dwi.shape[-1] != len(gtab.bvals):
            raise ValueError(f"dwi must have shape (X, Y, Z, {len(gtab.bvals)}) to match gtab, got {dwi.shape}")
        pairs = match_shells(gtab.bvals, gtab.bvecs, self.reference_bvals, self.reference_bvecs, self.lmax)
        s0 = mean_b0(dwi, gtab.bvals)
        signal = attenuation(dwi, gtab.bvals)
        out = np.zeros(dwi.shape[:3] + (len(self.reference_bvals),))
        b0 = find_shells(self.reference_bvals).index < 0
        out[..., b0] = s0[..., None]
        for pair in pairs:
            coeffs = self._transform(signal[..., pair.source] @ pair.fit_source.T, pair)
            out[..., pair.target] = (coeffs @ pair.eval_target.T) * s0[..., None]
        keep = np.sort(np.concatenate([np.flatnonzero(b0), *(pair.target for pair in pairs)]))
        return HarmonizedDWI(
            dwi=out[..., keep].astype(np.float32), bvals=self.reference_bvals[keep], bvecs=self.reference_bvecs[keep]
        )

    def _learn(self, train: Sequence[PairedSubject]) -> None:
        """What the subclass learns from the training subjects (nothing here)."""

    def _transform(self, coeffs: np.ndarray, pair: ShellPair) -> np.ndarray:
        """Site-A SH coefficients ``(X, Y, Z, K)`` of one shell -> those of the harmonized signal (unchanged here)."""
        return coeffs


class BaselineHarmonizer(SHHarmonizer):
    """No harmonization: A's signal resampled onto B's directions per shell through SH.

    References
    ----------
    Sadegheih, Weninger & Merhof 2023 (baseline resampled to the reference protocol); Descoteaux et al., MRM 58,
    2007 (SH fit of the signal).
    """


class RISHHarmonizer(SHHarmonizer):
    """RISH harmonization: per shell and even degree, scale A's SH coefficients so their energy matches B's.

    ``fit`` sums the RISH features (:func:`equidmri.harmonize.shells.rish_features`) of the training subjects on
    each site, inside their masks, and takes the ratio of the site means, ``scale_l = E[RISH_l^B] / E[RISH_l^A]``
    (the two sites may be different subjects: no pairing is used): per voxel (scale maps, where at least
    ``MIN_MAP_SUBJECTS`` subjects cover it) and over all voxels (a global scale per shell and degree). ``apply``
    multiplies A's degree-l coefficients by ``sqrt(scale_l)``, with the maps for volumes on the training grid
    (template space; the phantoms share one grid) and the global scales for any other grid (e.g. ``small_64D``)
    or where a map has no value. Degrees above those learned are left unchanged.

    Parameters
    ----------
    lmax : int
        As :class:`SHHarmonizer`.
    scale_maps : bool
        Use the per-voxel maps on the training grid (default); False uses the global scales everywhere.

    References
    ----------
    Mirzaalian et al., NeuroImage 135, 2016, eqs. 3-5; Cetin Karayumak et al., NeuroImage 184, 2019, §2.3
    (scale map = ratio of the group-mean RISH features in template space; their maps are smoothed, these are not).
    """

    def __init__(self, *, lmax: int = LMAX_CAP, scale_maps: bool = True) -> None:
        super().__init__(lmax=lmax)
        self.scale_maps = scale_maps
        self.grid: tuple[int, int, int] | None = None
        self.global_scale: dict[float, np.ndarray] = {}  # target b-value -> (L,)
        self.voxel_scale: dict[float, np.ndarray] = {}  # target b-value -> (X, Y, Z, L), NaN where unknown

    def _learn(self, train: Sequence[PairedSubject]) -> None:
        self.grid = train[0].a.dwi.shape[:3]
        sums: dict[float, list[np.ndarray]] = {}  # b -> [sum A (X,Y,Z,L), sum B, subjects covering (X,Y,Z)]
        for subject in train:
            if subject.a.dwi.shape[:3] != self.grid:
                raise ValueError(f"training subjects must share one grid, {subject.name} has {subject.a.dwi.shape[:3]}")
            pairs = match_shells(subject.a.bvals, subject.a.bvecs, subject.b.bvals, subject.b.bvecs, self.lmax)
            mask = subject.mask
            signal_a, signal_b = (
                attenuation(subject.a.dwi, subject.a.bvals),
                attenuation(subject.b.dwi, subject.b.bvals),
            )
            for pair in pairs:
                rish_a = rish_features(signal_a[..., pair.source] @ pair.fit_source.T, pair.lmax)
                rish_b = rish_features(signal_b[..., pair.target] @ pair.fit_target.T, pair.lmax)
                if pair.bval not in sums:
                    sums[pair.bval] = [np.zeros_like(rish_a), np.zeros_like(rish_b), np.zeros(self.grid)]
                entry = sums[pair.bval]
                entry[0][mask] += rish_a[mask]
                entry[1][mask] += rish_b[mask]
                entry[2] += mask
        for bval, (sum_a, sum_b, count) in sums.items():
            total_a, total_b = sum_a.sum(axis=(0, 1, 2)), sum_b.sum(axis=(0, 1, 2))
            self.global_scale[bval] = np.clip(
                np.divide(total_b, total_a, out=np.ones_like(total_a), where=total_a > 0), *SCALE_RANGE
            )
            mean_a = total_a / max(count.sum(), 1)
            usable = (count[..., None] >= MIN_MAP_SUBJECTS) & (sum_a > MIN_RISH_RATIO * mean_a * count[..., None])
            ratio = np.divide(sum_b, sum_a, out=np.full(sum_a.shape, np.nan), where=usable)
            self.voxel_scale[bval] = np.clip(ratio, *SCALE_RANGE)
        logger.info("RISH global scales: %s", {b: s.round(3).tolist() for b, s in self.global_scale.items()})

    def _transform(self, coeffs: np.ndarray, pair: ShellPair) -> np.ndarray:
        if pair.bval not in self.global_scale:
            raise ValueError(f"no RISH scale was learned for shell b={pair.bval:.0f} s/mm²")
        learned = self.global_scale[pair.bval].size
        scale = np.ones(coeffs.shape[:3] + (pair.lmax // 2 + 1,))
        n = min(learned, scale.shape[-1])
        scale[..., :n] = self.global_scale[pair.bval][:n]
        if self.scale_maps and coeffs.shape[:3] == self.grid:
            voxel = self.voxel_scale[pair.bval][..., :n]
            scale[..., :n] = np.where(np.isnan(voxel), scale[..., :n], voxel)
        elif self.scale_maps:
            logger.info("grid %s is not the training grid %s: global RISH scales", coeffs.shape[:3], self.grid)
        return coeffs * np.sqrt(scale[..., pair.degrees // 2])
