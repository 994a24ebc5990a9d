"""Synthetic training voxels with one subject's tissue statistics, on its own gradient scheme.

Each voxel holds 1 to ``MAX_FIBRES`` fibres (uniformly many) at uniformly random orientations, plus GM and CSF
partial volumes: tissue fractions ``(wm, gm, csf) ~ Dirichlet(TISSUE_ALPHA)`` and the WM fraction split among
the fibres by ``Dirichlet(FIBRE_ALPHA)``. Each fibre is a prolate tensor with its own ``(λ∥, λ⊥)`` **per
calibration shell**, and every volume is simulated with the tensor of its own shell (:func:`fibre_signal`), so the
b-dependence the calibration measured (kurtosis, the noise floor) is kept across shells. The modes differ only in
where the diffusivities come from (:data:`equidmri.synth.defaults.MODES`):

- ``syn``: λ's drawn from a multivariate log-normal fitted to the calibrated WM voxels' per-shell
  ``(log λ∥, log λ⊥)`` (mean and covariance over voxels, so the correlations across shells survive; λ⊥ capped at
  λ∥): new tensors with the subject's statistics. GM and CSF at the mean of their voxels (per shell).
- ``sample-mean`` ("Sample & Mean"): each fibre is one calibrated WM voxel's per-shell tensor, drawn with
  replacement; GM and CSF at their means.
- ``sample``: WM as ``sample-mean``; GM and CSF diffusivities are those of one randomly drawn GM (CSF) voxel.
- ``random-wm``: λ∥ ~ U(``RANDOM_LAMBDA_PAR``), λ⊥ = λ∥ · U(``RANDOM_PERP_RATIO``), the same on every shell
  (generic ranges, not the subject's: the control that should fail); GM and CSF at their means.

Rician noise (dipy ``add_noise``) has σ = 1 / SNR at the subject's estimated SNR, on signals with S0 = 1; the
noisy signals are then divided by their voxel's mean noisy b=0, as one normalises measured data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from equidmri.sims.synthesis import Protocol, add_rician_noise, fibre_signal
from equidmri.synth.calibration import TissueStatistics
from equidmri.synth.defaults import MAX_FIBRES, MODES

TISSUE_ALPHA = (2.0, 1.0, 1.0)  # Dirichlet of (wm, gm, csf): mean WM fraction 1/2, every mixture possible
FIBRE_ALPHA = 2.0  # Dirichlet of the fibres' shares of WM: rarely a negligible fibre
RANDOM_LAMBDA_PAR = (0.5e-3, 3.0e-3)  # mm²/s, random-wm's λ∥ range: from below GM's MD to free water
RANDOM_PERP_RATIO = (0.0, 1.0)  # random-wm's λ⊥ / λ∥: from a stick to an isotropic tensor
LAMBDA_FLOOR = 1e-6  # mm²/s, smallest λ entering syn's log-normal (a fitted λ⊥ of 0 has no logarithm)
B0_FLOOR = 1e-3  # smallest noisy b=0 (S0 = 1) a signal is divided by: SNR of 1000 at a zero b=0 draw
COMPARTMENTS = ("fibre1", "fibre2", "fibre3", "gm", "csf")

__all__ = ["SyntheticVoxels", "synthesize"]


@dataclass(frozen=True, eq=False)
class SyntheticVoxels:
    """Synthetic voxels and their ground truth (voxel-axis frame; M voxels, N volumes, S calibration shells).

    Attributes
    ----------
    signals : ndarray, shape ``(M, N)`` float32
        Noisy signals divided by the voxel's mean noisy b=0 (dimensionless, about 1 at b=0).
    signals_clean : ndarray, shape ``(M, N)`` float32
        Noise-free signals, S0 = 1.
    tissue_fractions : ndarray, shape ``(M, 3)``
        WM, GM, CSF fractions; they sum to 1.
    fibre_fractions : ndarray, shape ``(M, 3)``
        Voxel fraction of each fibre (0 where absent); they sum to the WM fraction.
    fibre_dirs : ndarray, shape ``(M, 3, 3)``
        Unit direction of each fibre, NaN where absent.
    fibre_evals : ndarray, shape ``(M, 3, S, 2)``
        ``(λ∥, λ⊥)`` of each fibre on each shell, mm²/s, NaN where absent.
    gm_md, csf_md : ndarray, shape ``(M, S)``
        GM and CSF diffusivity on each shell, mm²/s.
    n_fibres : ndarray, shape ``(M,)`` int64
        1 to 3.
    bvals : ndarray, shape ``(N,)``
        s/mm².
    bvecs : ndarray, shape ``(N, 3)``
        Unit b-vectors (voxel-axis frame), zero for b=0.
    shell_index : ndarray, shape ``(N,)`` int64
        Calibration shell of each volume, -1 for b=0.
    shell_bvals : ndarray, shape ``(S,)``
        Mean b-value of each calibration shell, s/mm².
    snr : float
        b=0 SNR of the noise (``inf``: no noise added).
    mode : str
    """

    signals: np.ndarray
    signals_clean: np.ndarray
    tissue_fractions: np.ndarray
    fibre_fractions: np.ndarray
    fibre_dirs: np.ndarray
    fibre_evals: np.ndarray
    gm_md: np.ndarray
    csf_md: np.ndarray
    n_fibres: np.ndarray
    bvals: np.ndarray
    bvecs: np.ndarray
    shell_index: np.ndarray
    shell_bvals: np.ndarray
    snr: float
    mode: str

    def arrays(self) -> dict[str, np.ndarray]:
        """Every field as an array (``numpy.savez`` keyword arguments)."""
        return {name: np.asarray(value) for name, value in vars(self).items()}


def _wm_lambdas(stats: TissueStatistics, mode: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """``(count, S, 2)`` per-shell ``(λ∥, λ⊥)`` of ``count`` fibres drawn as ``mode`` says, mm²/s."""
    s = stats.shells.bvals.size
    if mode == "random-wm":
        par = rng.uniform(*RANDOM_LAMBDA_PAR, size=count)
        perp = par * rng.uniform(*RANDOM_PERP_RATIO, size=count)
        return np.broadcast_to(np.stack([par, perp], -1)[:, None, :], (count, s, 2)).copy()
    calibrated = np.stack([stats.wm_lambda_par, stats.wm_lambda_perp], -1)  # (W, S, 2)
    if mode != "syn":
        return calibrated[rng.integers(0, calibrated.shape[0], size=count)]
    logs = np.log(np.maximum(calibrated, LAMBDA_FLOOR)).reshape(calibrated.shape[0], -1)  # (W, 2S)
    cov = np.cov(logs, rowvar=False) if logs.shape[0] > 1 else np.zeros((logs.shape[1],) * 2)
    drawn = np.exp(rng.multivariate_normal(logs.mean(0), np.atleast_2d(cov), size=count, method="eigh"))
    drawn = drawn.reshape(count, s, 2)
    drawn[..., 1] = np.minimum(drawn[..., 1], drawn[..., 0])  # prolate: λ⊥ <= λ∥
    return drawn


def _iso(values: np.ndarray, sample: bool, count: int, rng: np.random.Generator) -> np.ndarray:
    """``(count, S)`` diffusivities: rows drawn from ``values`` ``(V, S)`` (``sample``) or their mean."""
    if sample:
        return values[rng.integers(0, values.shape[0], size=count)]
    return np.broadcast_to(values.mean(0), (count, values.shape[1])).copy()


def synthesize(
    stats: TissueStatistics, mode: str, n_voxels: int, rng: np.random.Generator, *, snr: float | None = None
) -> SyntheticVoxels:
    """Draw ``n_voxels`` synthetic voxels in ``mode`` (see the module docstring) on the subject's scheme.

    Parameters
    ----------
    stats : TissueStatistics
        From :func:`equidmri.synth.calibration.calibrate`.
    mode : str
        One of :data:`equidmri.synth.defaults.MODES`.
    n_voxels : int
        Number of voxels, >= 1.
    rng : numpy.random.Generator
        Source of every draw (same seed, same voxels).
    snr : float, optional
        b=0 SNR of the Rician noise; default the subject's (``stats.snr``); ``inf`` adds none.

    Returns
    -------
    SyntheticVoxels

    Raises
    ------
    ValueError
        If ``mode`` is unknown, ``n_voxels`` < 1, ``snr`` is not positive, or it is None and the subject's SNR
        could not be estimated.

    References
    ----------
    Sadegheih, Weninger & Merhof 2023 (the four modes); Basser, Mattiello & LeBihan, Biophys. J. 66, 1994
    (tensor signal); Gudbjartsson & Patz, MRM 34, 1995 (Rician noise).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if isinstance(n_voxels, bool) or not isinstance(n_voxels, (int, np.integer)) or n_voxels < 1:
        raise ValueError(f"n_voxels must be an integer >= 1, got {n_voxels!r}")
    if snr is None and np.isnan(stats.snr):
        raise ValueError("the subject's SNR could not be estimated (see TissueStatistics.snr_method); give snr")
    snr = stats.snr if snr is None else float(snr)
    if not snr > 0:
        raise ValueError(f"snr must be > 0, got {snr}")
    m, s = int(n_voxels), stats.shells.bvals.size
    n_fibres = rng.integers(1, MAX_FIBRES + 1, size=m)
    present = np.arange(MAX_FIBRES)[None, :] < n_fibres[:, None]  # (M, 3)
    tissue = rng.dirichlet(TISSUE_ALPHA, size=m)
    shares = rng.gamma(FIBRE_ALPHA, size=(m, MAX_FIBRES)) * present  # Dirichlet over the present fibres
    fibre_fractions = tissue[:, :1] * shares / shares.sum(1, keepdims=True)
    dirs = rng.normal(size=(m, MAX_FIBRES, 3))
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    lambdas = _wm_lambdas(stats, mode, m * MAX_FIBRES, rng).reshape(m, MAX_FIBRES, s, 2)
    gm_md = _iso(stats.gm_md, mode == "sample", m, rng)
    csf_md = _iso(stats.csf_md, mode == "sample", m, rng)

    index = stats.shells.index
    clean = np.ones((m, index.size), dtype=np.float32)  # b=0 volumes: the fractions sum to 1
    for shell in range(s):
        volumes = np.flatnonzero(index == shell)
        protocol = Protocol(stats.bvals[volumes], stats.bvecs[volumes])
        clean[:, volumes] = fibre_signal(
            protocol, dirs, fibre_fractions, lambdas[:, :, shell], tissue[:, 1], tissue[:, 2], 1.0,
            gm_diffusivity=gm_md[:, shell], csf_diffusivity=csf_md[:, shell],
        )  # fmt: skip
    noisy = add_rician_noise(clean, None if np.isinf(snr) else snr, 1.0, rng)
    b0 = np.maximum(noisy[:, index < 0].mean(1, keepdims=True), B0_FLOOR)
    absent = ~present
    dirs[absent] = np.nan
    lambdas[absent] = np.nan
    return SyntheticVoxels(
        signals=(noisy / b0).astype(np.float32),
        signals_clean=clean,
        tissue_fractions=tissue,
        fibre_fractions=fibre_fractions,
        fibre_dirs=dirs,
        fibre_evals=lambdas,
        gm_md=gm_md,
        csf_md=csf_md,
        n_fibres=n_fibres.astype(np.int64),
        bvals=stats.bvals.copy(),
        bvecs=stats.bvecs.copy(),
        shell_index=index.copy(),
        shell_bvals=stats.shells.bvals.copy(),
        snr=snr,
        mode=mode,
    )
