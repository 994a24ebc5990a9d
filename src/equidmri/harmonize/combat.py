"""ComBat on FA and MD maps: the site's location and scale, per voxel, estimated across subjects and swapped.

ComBat models a feature ``y`` of subject ``j`` at site ``i`` as ``y_ij = α + γ_i + δ_i ε_ij`` (no covariates
here): ``α`` the feature's pooled mean, ``γ_i`` and ``δ_i`` the site's additive and multiplicative effects, shrunk
towards their across-feature means by empirical Bayes (Johnson, Li & Rabinovic 2007, eqs. 2.1–2.4; Fortin et al.
2017 and 2018 for DTI maps, whose features are voxels). :func:`combat_fit` estimates ``α``, the pooled variance
``σ²``, ``γ*`` and ``δ*`` with ``neuroCombat`` (the ``bench`` extra); :meth:`ComBat.transfer` maps new subjects of
one site onto another site's location and scale: ``((y - α)/σ - γ*_a)/√δ*_a`` is the standardized, site-free
value, which ``(· √δ*_b + γ*_b) σ + α`` puts at site ``b``. neuroCombat 0.2.12 maps onto one reference site
with ``ref_batch``, but that path uses ``np.int`` and fails on numpy 2; its ``neuroCombatFromTraining`` maps
new data onto the pooled site only, hence :meth:`ComBat.transfer`.

It harmonizes maps, not the signal: it has no ``apply(dwi, gtab)`` and is not in the harmonizer registry.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from equidmri.extras import require_extra

SOURCE = "Johnson, Li & Rabinovic 2007; Fortin et al. 2017 (DTI maps); neuroCombat 0.2.12"
SUMMARY = "ComBat (empirical-Bayes location/scale per voxel) on DTI FA and MD maps, site A mapped onto site B"

__all__ = ["SOURCE", "SUMMARY", "ComBat", "combat_fit", "require"]


def require() -> ModuleType:
    """Import neuroCombat.

    Raises
    ------
    equidmri.extras.MissingExtraError
        If neuroCombat or pandas (the ``bench`` extra) is not installed; the message names the extra.
    """
    require_extra("pandas", "bench", "ComBat harmonization")
    return require_extra("neuroCombat", "bench", "ComBat harmonization")


@dataclass(frozen=True)
class ComBat:
    """Fitted ComBat estimates over M features (voxels) and the sites they were fitted on.

    Attributes
    ----------
    sites : tuple of str
        Site labels, in the order of the rows of ``gamma`` and ``delta``.
    mean : ndarray, shape ``(M,)``
        ``α``: pooled mean per feature (sites weighted by their subject counts).
    sd : ndarray, shape ``(M,)``
        ``σ``: pooled residual standard deviation per feature.
    gamma, delta : ndarray, shape ``(n_sites, M)``
        ``γ*`` and ``δ*``: the empirical-Bayes additive (in units of ``σ``) and multiplicative (variance ratio)
        site effects.
    """

    sites: tuple[str, ...]
    mean: np.ndarray
    sd: np.ndarray
    gamma: np.ndarray
    delta: np.ndarray

    def transfer(self, maps: np.ndarray, source: str, target: str) -> np.ndarray:
        """Map ``maps`` ``(S, M)`` of S subjects from site ``source`` onto site ``target``: ``(S, M)``.

        Raises
        ------
        ValueError
            If a site was not fitted or ``maps`` does not have M features.
        """
        maps = np.asarray(maps, dtype=np.float64)
        if maps.ndim != 2 or maps.shape[1] != self.mean.size:
            raise ValueError(f"maps must be (subjects, {self.mean.size}), got {maps.shape}")
        for site in (source, target):
            if site not in self.sites:
                raise ValueError(f"site {site!r} was not fitted; fitted: {list(self.sites)}")
        a, b = self.sites.index(source), self.sites.index(target)
        free = ((maps - self.mean) / self.sd - self.gamma[a]) / np.sqrt(self.delta[a])
        return (free * np.sqrt(self.delta[b]) + self.gamma[b]) * self.sd + self.mean


def combat_fit(maps: np.ndarray, sites: Sequence[str]) -> ComBat:
    """Fit ComBat (parametric empirical Bayes, no covariates) to ``maps`` ``(S, M)`` of S subjects' M features.

    Parameters
    ----------
    maps : ndarray, shape ``(S, M)``
        One row per subject scan, e.g. the FA of the voxels of a common mask.
    sites : sequence of str, length S
        Each row's site; at least two sites with two subjects each.

    Returns
    -------
    ComBat

    Raises
    ------
    ValueError
        If the shapes disagree, a site has fewer than two subjects or a value is not finite.
    equidmri.extras.MissingExtraError
        If neuroCombat (the ``bench`` extra) is not installed.

    References
    ----------
    Johnson, Li & Rabinovic, Biostatistics 8(1), 2007; Fortin et al., NeuroImage 161, 2017.
    """
    maps = np.asarray(maps, dtype=np.float64)
    sites = [str(site) for site in sites]
    labels, counts = np.unique(sites, return_counts=True)
    if maps.ndim != 2 or maps.shape[0] != len(sites):
        raise ValueError(f"maps must be (subjects, features) with {len(sites)} subjects, got {maps.shape}")
    if len(labels) < 2 or counts.min() < 2:
        raise ValueError(f"ComBat needs two sites with two subjects each, got {dict(zip(labels, counts))}")
    if not np.isfinite(maps).all():
        raise ValueError("maps must be finite")
    neurocombat = require()
    pandas = require_extra("pandas", "bench", "ComBat harmonization")
    with contextlib.redirect_stdout(io.StringIO()):  # neuroCombat prints its progress
        fit = neurocombat.neuroCombat(dat=maps.T, covars=pandas.DataFrame({"site": sites}), batch_col="site")
    estimates = fit["estimates"]
    return ComBat(
        sites=tuple(str(site) for site in estimates["batches"]),
        mean=np.asarray(estimates["stand.mean"])[:, 0].copy(),
        sd=np.sqrt(np.asarray(estimates["var.pooled"])[:, 0]),
        gamma=np.asarray(estimates["gamma.star"]),
        delta=np.asarray(estimates["delta.star"]),
    )
