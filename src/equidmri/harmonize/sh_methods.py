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
from typing import Any

import numpy as np
from dipy.core.gradients import GradientTable

from equidmri.dmri.gradients import LMAX_CAP, find_shells, make_gtab
from equidmri.dmri.io import DWIData
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
        """Learn from the training subjects' site-A and site-B scans (:meth:`fit_sites`; pairing unused).

        Raises
        ------
        ValueError
            As :meth:`fit_sites`.
        """
        return self.fit_sites([subject.a for subject in train], [subject.b for subject in train])

    def fit_sites(self, site_a: Sequence[DWIData], site_b: Sequence[DWIData]) -> SHHarmonizer:
        """Learn from scans of site A and of site B, of the same or of different subjects.

        B's protocol, shared by every site-B scan, becomes the output protocol. A scan's ``mask`` (every voxel
        with a positive b=0 signal where it is None) selects the voxels that count.

        Raises
        ------
        ValueError
            If a site has no scan, the site-B protocols differ, or a site-A shell is not in B's protocol.
        """
        if not site_a or not site_b:
            raise ValueError(f"fit needs scans of both sites, got {len(site_a)} of A and {len(site_b)} of B")
        bvals, bvecs = site_b[0].bvals, site_b[0].bvecs
        for number, scan in enumerate(site_b[1:], start=2):
            if scan.bvals.shape != bvals.shape or not (
                np.allclose(scan.bvals, bvals) and np.allclose(scan.bvecs, bvecs)
            ):
                raise ValueError(f"site-B scan {number} has another protocol than the first: B's scans must share one")
        self.reference_bvals, self.reference_bvecs = bvals.copy(), bvecs.copy()
        self._learn(site_a, site_b)
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
        coeffs = self._transform_shells([signal[..., pair.source] @ pair.fit_source.T for pair in pairs], pairs)
        for pair, shell_coeffs in zip(pairs, coeffs):
            out[..., pair.target] = (shell_coeffs @ pair.eval_target.T) * s0[..., None]
        keep = np.sort(np.concatenate([np.flatnonzero(b0), *(pair.target for pair in pairs)]))
        return HarmonizedDWI(
            dwi=out[..., keep].astype(np.float32), bvals=self.reference_bvals[keep], bvecs=self.reference_bvecs[keep]
        )

    def options(self) -> dict[str, Any]:
        """The constructor's arguments: ``type(self)(**self.options())`` is an unfitted copy."""
        return {"lmax": self.lmax}

    def state(self) -> dict[str, Any]:
        """What :meth:`fit` learned, as arrays and numbers (a model file's content; :meth:`load_state` reads it).

        Raises
        ------
        RuntimeError
            If the harmonizer has not been fitted.
        """
        if self.reference_bvals is None:
            raise RuntimeError(f"{type(self).__name__} must be fitted before it is saved")
        return {"reference_bvals": self.reference_bvals, "reference_bvecs": self.reference_bvecs}

    def load_state(self, state: dict[str, Any]) -> None:
        """Take over a fitted state written by :meth:`state`."""
        self.reference_bvals = np.asarray(state["reference_bvals"], dtype=np.float64)
        self.reference_bvecs = np.asarray(state["reference_bvecs"], dtype=np.float64)

    def _learn(self, site_a: Sequence[DWIData], site_b: Sequence[DWIData]) -> None:
        """What the subclass learns from the two sites' scans (nothing here)."""

    def _transform_shells(self, coeffs: list[np.ndarray], pairs: list[ShellPair]) -> list[np.ndarray]:
        """Site-A SH coefficients of every shell (``(X, Y, Z, K_s)`` each, in the order of ``pairs``) -> those of
        the harmonized signal: :meth:`_transform` shell by shell here; methods that mix shells override it."""
        return [self._transform(shell_coeffs, pair) for shell_coeffs, pair in zip(coeffs, pairs)]

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

    ``fit`` / ``fit_sites`` sum the RISH features (:func:`equidmri.harmonize.shells.rish_features`) of each
    site's scans inside their masks, and takes the ratio of the site means, ``scale_l = E[RISH_l^B] / E[RISH_l^A]``
    (the two sites may be different subjects: no pairing is used): per voxel (scale maps, where at least
    ``MIN_MAP_SUBJECTS`` subjects cover it) and over all voxels (a global scale per shell and degree). ``apply``
    multiplies A's degree-l coefficients by ``sqrt(scale_l)``, with the maps for volumes on the training grid
    (template space; the phantoms share one grid) and the global scales for any other grid (e.g. ``small_64D``)
    or where a map has no value. Degrees that one site's direction counts do not resolve keep scale 1.

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

    def options(self) -> dict[str, Any]:
        return {**super().options(), "scale_maps": self.scale_maps}

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "grid": list(self.grid),
            "global_scale": {f"{b:g}": scale for b, scale in self.global_scale.items()},
            "voxel_scale": {f"{b:g}": scale for b, scale in self.voxel_scale.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.grid = tuple(int(n) for n in state["grid"])
        self.global_scale = {float(b): np.asarray(v, dtype=np.float64) for b, v in state["global_scale"].items()}
        self.voxel_scale = {float(b): np.asarray(v, dtype=np.float64) for b, v in state["voxel_scale"].items()}

    def _learn(self, site_a: Sequence[DWIData], site_b: Sequence[DWIData]) -> None:
        self.grid = site_a[0].dwi.shape[:3]
        sums_a, lmax_a = self._site_sums(site_a, self.lmax)
        sums = [sums_a, self._site_sums(site_b, lmax_a)[0]]  # B's features at the degrees A resolves, as the papers
        for bval in sums[0]:
            if bval not in sums[1]:
                raise ValueError(f"no site-B scan has shell b={bval:.0f} s/mm²")
            (total_a, count_a, voxel_a, covered_a), (total_b, count_b, voxel_b, covered_b) = (
                sums[0][bval],
                sums[1][bval],
            )
            known = (count_a > 0) & (count_b > 0)  # degrees both sites resolve
            mean_a = np.divide(total_a, count_a, out=np.zeros_like(total_a), where=known)
            mean_b = np.divide(total_b, count_b, out=np.zeros_like(total_b), where=known)
            scale = np.divide(mean_b, mean_a, out=np.ones_like(mean_a), where=known & (mean_a > 0))
            self.global_scale[bval] = np.clip(scale, *SCALE_RANGE)
            map_a = np.divide(voxel_a, covered_a, out=np.zeros_like(voxel_a), where=covered_a > 0)
            map_b = np.divide(voxel_b, covered_b, out=np.zeros_like(voxel_b), where=covered_b > 0)
            usable = (np.minimum(covered_a, covered_b) >= MIN_MAP_SUBJECTS) & (map_a > MIN_RISH_RATIO * mean_a) & known
            self.voxel_scale[bval] = np.clip(
                np.divide(map_b, map_a, out=np.full(map_a.shape, np.nan), where=usable), *SCALE_RANGE
            )
        logger.info("RISH global scales: %s", {b: s.round(3).tolist() for b, s in self.global_scale.items()})

    def _site_sums(self, scans: Sequence[DWIData], lmax_cap: int) -> tuple[dict[float, tuple[np.ndarray, ...]], int]:
        """Per reference shell: RISH sums over all masked voxels ``(L,)`` and their voxel counts ``(L,)``, and the
        same per voxel of the training grid ``(X, Y, Z, L)`` (scans on that grid only); SH fits of degree at most
        ``lmax_cap``. Also the highest degree fitted."""
        n_degrees = self.lmax // 2 + 1
        sums: dict[float, tuple[np.ndarray, ...]] = {}
        highest = 0
        for scan in scans:
            pairs = match_shells(scan.bvals, scan.bvecs, self.reference_bvals, self.reference_bvecs, lmax_cap)
            highest = max([highest, *(pair.lmax for pair in pairs)])
            signal = attenuation(scan.dwi, scan.bvals)
            mask = scan.mask if scan.mask is not None else mean_b0(scan.dwi, scan.bvals) > 0
            on_grid = scan.dwi.shape[:3] == self.grid
            for pair in pairs:
                resolved = np.arange(n_degrees) <= pair.lmax // 2
                rish = np.zeros(scan.dwi.shape[:3] + (n_degrees,))
                rish[..., resolved] = rish_features(signal[..., pair.source] @ pair.fit_source.T, pair.lmax)
                if pair.bval not in sums:
                    sums[pair.bval] = (
                        np.zeros(n_degrees),
                        np.zeros(n_degrees),
                        *np.zeros((2,) + self.grid + (n_degrees,)),
                    )
                total, count, voxel, covered = sums[pair.bval]
                total += rish[mask].sum(axis=0)
                count += mask.sum() * resolved
                if on_grid:
                    voxel[mask] += rish[mask]
                    covered[mask] += resolved
        return sums, highest

    def _transform(self, coeffs: np.ndarray, pair: ShellPair) -> np.ndarray:
        if pair.bval not in self.global_scale:
            raise ValueError(f"no RISH scale was learned for shell b={pair.bval:.0f} s/mm²")
        n = pair.lmax // 2 + 1
        scale = np.broadcast_to(self.global_scale[pair.bval][:n], coeffs.shape[:3] + (n,))
        if self.scale_maps and coeffs.shape[:3] == self.grid:
            voxel = self.voxel_scale[pair.bval][..., :n]
            scale = np.where(np.isnan(voxel), scale, voxel)
        elif self.scale_maps:
            logger.info("grid %s is not the training grid %s: global RISH scales", coeffs.shape[:3], self.grid)
        return coeffs * np.sqrt(scale[..., pair.degrees // 2])
