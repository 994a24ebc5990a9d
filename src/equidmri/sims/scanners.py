"""Two-scanner acquisitions of the same subject, a simulation with a known answer for harmonization (issue 20).

A subject (a phantom of :func:`equidmri.sims.phantoms.make_phantom`, or the real ``small_64D`` volume) is
"acquired" by a scanner described by :class:`ScannerParams`. In the order they act on the signal:

1. **b-value miscalibration**: the scanner applies ``b_scale × b`` on each shell but reports the nominal ``b``
   (a gradient-amplitude error ε gives ``b_scale = (1 + ε)²``);
2. **gradient scheme**: its own repulsion-spread direction set per shell (:func:`equidmri.sims.synthesis.make_protocol`,
   seeded by ``direction_seed``), possibly fewer directions than the other scanner;
3. **per-shell global gain**: the DW volumes of shell s are multiplied by ``shell_gain[s]`` (b=0 volumes by 1);
4. **blur**: a Gaussian point-spread function of ``blur_sigma`` voxels on every volume;
5. **coil sensitivity**: a smooth, radially increasing receive profile ``1 + coil_gain · (r / R)²`` (``r`` the
   distance from the volume centre, ``R`` half the volume's edge): a many-channel head coil is more sensitive at
   the periphery; and a **bias field** ``1 + bias_amplitude · x`` with ``x`` the position along ``bias_axis``
   scaled to [-1, 1];
6. **noise**: Rician, σ = ``s0 / snr`` (``s0`` = the b=0 signal of a voxel full of tissue) everywhere, so
   the local SNR follows the coil profile.

All subjects of a scanner share its direction set. A subject's noise-free signal (steps 1–5) is kept for
analysis; the harmonization target is the acquired, noisy signal of scanner B.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter

from equidmri.dmri.gradients import B0_THRESHOLD, find_shells
from equidmri.dmri.io import DWIData
from equidmri.harmonize.shells import attenuation, match_shells, mean_b0
from equidmri.harmonize.subjects import PairedSubject
from equidmri.sims.phantoms import S0, make_phantom
from equidmri.sims.synthesis import SHELLS, Protocol, add_rician_noise, make_protocol

SUBJECT_SIZE = 20  # voxels per edge of a phantom subject (20³: a cohort of 40 generates in seconds)
REAL_VOLUME = "small_64D"  # the real subject: dipy's bundled brain volume (b = 1000 s/mm², 64 directions)
REAL_LMAX = 8  # SH degree of the real volume's signal model on its 64 directions
MIN_ATTENUATION = 1e-6  # floor of the resampled real attenuation before the b-value power law

__all__ = [
    "REAL_VOLUME",
    "SCANNER_A",
    "SCANNER_B",
    "ScannerParams",
    "acquire",
    "paired_cohort",
    "phantom_pair",
    "real_pair",
    "scanner_protocol",
]


@dataclass(frozen=True)
class ScannerParams:
    """One scanner's acquisition and imperfections; the defaults are an ideal scanner with SNR 30.

    Attributes
    ----------
    name : str
    shells : tuple of float
        Nominal b-values of the DW shells, s/mm².
    n_b0 : int
        b=0 volumes.
    directions : int
        Directions per shell.
    direction_seed : int
        Seed of the direction sets (two scanners with different seeds have different schemes).
    shell_gain : tuple of float
        Multiplicative gain of each shell's DW volumes, dimensionless (1: none).
    b_scale : tuple of float
        Applied over nominal b-value of each shell, dimensionless (1: calibrated).
    snr : float or None
        b=0 signal of a full voxel over the noise σ at unit coil sensitivity; None: no noise.
    coil_gain : float
        Peripheral excess of the receive sensitivity ``1 + coil_gain (r / R)²``, dimensionless (0: uniform).
    bias_amplitude : float
        Amplitude of the linear bias field ``1 + bias_amplitude · x``, x in [-1, 1] along ``bias_axis``.
    bias_axis : int
        Voxel axis (0, 1, 2) of the bias field.
    blur_sigma : float
        Standard deviation of the Gaussian point-spread function, voxels (0: none).

    Raises
    ------
    ValueError
        If ``shell_gain`` or ``b_scale`` does not have one entry per shell, a gain, scale, count or the SNR is
        not positive, ``blur_sigma`` or ``coil_gain`` is negative, ``|bias_amplitude| >= 1`` or ``bias_axis`` is
        not 0, 1 or 2.
    """

    name: str = "ideal"
    shells: tuple[float, ...] = SHELLS
    n_b0: int = 1
    directions: int = 60
    direction_seed: int = 0
    shell_gain: tuple[float, ...] = (1.0, 1.0, 1.0)
    b_scale: tuple[float, ...] = (1.0, 1.0, 1.0)
    snr: float | None = 30.0
    coil_gain: float = 0.0
    bias_amplitude: float = 0.0
    bias_axis: int = 0
    blur_sigma: float = 0.0

    def __post_init__(self) -> None:
        for name in ("shell_gain", "b_scale"):
            values = getattr(self, name)
            if len(values) != len(self.shells) or min(values) <= 0:
                raise ValueError(f"{name} needs one positive value per shell {self.shells}, got {values}")
        if self.n_b0 < 1 or self.directions < 1 or not self.shells or min(self.shells) <= B0_THRESHOLD:
            raise ValueError(f"needs >= 1 b=0, >= 1 direction and DW shells, got {self.n_b0}, {self.directions}")
        if self.snr is not None and self.snr <= 0:
            raise ValueError(f"snr must be > 0 or None, got {self.snr}")
        if self.blur_sigma < 0 or self.coil_gain < 0 or not abs(self.bias_amplitude) < 1:
            raise ValueError(
                "blur_sigma and coil_gain must be >= 0 and |bias_amplitude| < 1, got "
                f"{self.blur_sigma}, {self.coil_gain}, {self.bias_amplitude}"
            )
        if self.bias_axis not in (0, 1, 2):
            raise ValueError(f"bias_axis must be 0, 1 or 2, got {self.bias_axis}")

    def describe(self) -> dict[str, object]:
        """Every parameter, JSON-friendly."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


SCANNER_A = ScannerParams(  # the site to harmonize: an older scanner with a 20-channel head coil
    name="A (20-channel coil)",
    directions=30,
    direction_seed=1,
    snr=20.0,
    coil_gain=0.15,
    bias_amplitude=0.1,
    bias_axis=0,
)
SCANNER_B = ScannerParams(  # the reference site: 64-channel head coil, miscalibrated gradients, other gains
    name="B (64-channel coil)",
    directions=60,
    direction_seed=2,
    shell_gain=(1.05, 1.10, 1.15),
    b_scale=(1.03, 1.03, 1.03),  # a 1.5 % gradient-amplitude error
    snr=35.0,
    coil_gain=0.4,
    bias_amplitude=0.15,
    bias_axis=1,
    blur_sigma=0.5,
)


@lru_cache(maxsize=16)
def _protocol(n_b0: int, shells: tuple[float, ...], directions: int, seed: int) -> Protocol:
    return make_protocol(np.random.default_rng(seed), n_b0=n_b0, shells=shells, directions_per_shell=directions)


def scanner_protocol(scanner: ScannerParams) -> Protocol:
    """The scanner's nominal protocol: ``n_b0`` b=0 volumes, then each shell's ``directions`` directions."""
    return _protocol(scanner.n_b0, tuple(scanner.shells), scanner.directions, scanner.direction_seed)


def applied_bvals(scanner: ScannerParams, bvals: np.ndarray) -> np.ndarray:
    """The b-values the scanner applies for the nominal ``bvals`` ``(N,)`` (s/mm²): ``b_scale`` of each shell."""
    out = np.asarray(bvals, dtype=np.float64).copy()
    shells = find_shells(out)
    for s, bval in enumerate(shells.bvals):
        out[shells.index == s] *= scanner.b_scale[int(np.argmin(np.abs(np.asarray(scanner.shells) - bval)))]
    return out


def _spatial_profile(scanner: ScannerParams, shape: tuple[int, int, int]) -> np.ndarray:
    """Coil sensitivity times bias field, ``(X, Y, Z)``."""
    axes = [(np.arange(n) - (n - 1) / 2) / ((n - 1) / 2 if n > 1 else 1.0) for n in shape]  # each in [-1, 1]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    coil = 1.0 + scanner.coil_gain * (grid**2).sum(-1)
    return coil * (1.0 + scanner.bias_amplitude * grid[..., scanner.bias_axis])


def acquire(
    signal: np.ndarray, bvals: np.ndarray, scanner: ScannerParams, s0: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a scanner's gains, blur, coil profile, bias field and noise to a signal at its applied b-values.

    Parameters
    ----------
    signal : ndarray, shape ``(X, Y, Z, N)``
        Noise-free signal at the scanner's applied b-values and directions, scanner units.
    bvals : ndarray, shape ``(N,)``
        Nominal b-values, s/mm² (to find each volume's shell).
    scanner : ScannerParams
    s0 : float
        b=0 signal of a full voxel, scanner units (the noise σ is ``s0 / snr``).
    rng : numpy.random.Generator
        Source of the noise.

    Returns
    -------
    acquired, noise_free : ndarray, shape ``(X, Y, Z, N)`` float32
    """
    shells = find_shells(bvals)
    gain = np.ones(len(bvals))
    for s, bval in enumerate(shells.bvals):
        gain[shells.index == s] = scanner.shell_gain[int(np.argmin(np.abs(np.asarray(scanner.shells) - bval)))]
    out = np.asarray(signal, dtype=np.float64) * gain
    if scanner.blur_sigma > 0:
        out = gaussian_filter(out, sigma=(scanner.blur_sigma,) * 3 + (0.0,), mode="nearest")
    out *= _spatial_profile(scanner, out.shape[:3])[..., None]
    noise_free = out.astype(np.float32)
    return add_rician_noise(noise_free, scanner.snr, s0, rng), noise_free


def _dwi(dwi: np.ndarray, protocol: Protocol, mask: np.ndarray) -> DWIData:
    return DWIData(
        dwi=dwi,
        affine=np.eye(4),
        bvals=protocol.bvals.copy(),
        bvecs=protocol.bvecs.copy(),
        mask=mask,
        valid=np.ones(mask.shape, dtype=bool),
        n_nonfinite_voxels=0,
    )


def phantom_pair(
    seed: int, size: int = SUBJECT_SIZE, scanner_a: ScannerParams = SCANNER_A, scanner_b: ScannerParams = SCANNER_B
) -> PairedSubject:
    """One phantom subject (geometry drawn from ``seed``) acquired on both scanners.

    The phantom's noise-free signal is computed once for both scanners' applied b-values and directions, then
    each scanner's effects and noise (independent streams of ``seed``) are applied.

    Raises
    ------
    ValueError
        As :func:`equidmri.sims.phantoms.make_phantom` (``size`` < 8).
    """
    protocols = [scanner_protocol(s) for s in (scanner_a, scanner_b)]
    applied = [applied_bvals(s, p.bvals) for s, p in zip((scanner_a, scanner_b), protocols)]
    both = Protocol(np.concatenate(applied), np.concatenate([p.bvecs for p in protocols]))
    geometry, noise_a, noise_b = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    phantom = make_phantom(size, both, geometry, snr=None)
    n_a = protocols[0].bvals.size
    a, _ = acquire(phantom.dwi[..., :n_a], protocols[0].bvals, scanner_a, S0, noise_a)
    b, b_noise_free = acquire(phantom.dwi[..., n_a:], protocols[1].bvals, scanner_b, S0, noise_b)
    return PairedSubject(
        name=f"phantom-{seed:03d}",
        a=_dwi(a, protocols[0], phantom.mask),
        b=_dwi(b, protocols[1], phantom.mask),
        b_noise_free=b_noise_free,
        tissue_fractions=phantom.tissue_fractions,
    )


def paired_cohort(
    n_subjects: int,
    seed: int = 0,
    size: int = SUBJECT_SIZE,
    scanner_a: ScannerParams = SCANNER_A,
    scanner_b: ScannerParams = SCANNER_B,
) -> list[PairedSubject]:
    """``n_subjects`` phantom subjects, seeds ``seed, seed + 1, ...``, each on both scanners (:func:`phantom_pair`).

    Raises
    ------
    ValueError
        If ``n_subjects`` < 1.
    """
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
    return [phantom_pair(seed + i, size, scanner_a, scanner_b) for i in range(n_subjects)]


def real_pair(scanner_b: ScannerParams = SCANNER_B, seed: int = 0, name: str = REAL_VOLUME) -> PairedSubject:
    """A real volume as site A (acquired as it is) and pushed through scanner B's transform as site B.

    Only B's shells that the real volume has are acquired (``small_64D``: b = 1000 s/mm²). The noise-free signal
    at B's directions is the real volume's per-shell SH fit of its attenuation (degree ``REAL_LMAX``) evaluated
    there (:func:`equidmri.harmonize.shells.match_shells`, the baseline's resampling) times its mean b=0;
    B's applied b-value ``b'`` changes it as a mono-exponential decay per direction, ``E(b') = E(b)^(b'/b)``,
    the exact change for ``E = exp(-b D(g))``. The mask is
    :func:`equidmri.dmri.mask.compute_mask`'s and ``s0`` for B's noise the median b=0 signal inside it.

    Raises
    ------
    ValueError
        If the volume is unknown (:data:`equidmri.data.REAL_VOLUMES`) or has a shell scanner B lacks.
    """
    from equidmri.data import load_real_volume  # the one door to data
    from equidmri.dmri.mask import compute_mask

    data = load_real_volume(name)
    mask = compute_mask(data.dwi, data.gtab(), data.valid)
    protocol_b = scanner_protocol(scanner_b)
    pairs = match_shells(data.bvals, data.bvecs, protocol_b.bvals, protocol_b.bvecs, REAL_LMAX)
    s0, real = mean_b0(data.dwi, data.bvals), attenuation(data.dwi, data.bvals)
    b0 = np.flatnonzero(find_shells(protocol_b.bvals).index < 0)
    full = np.zeros(data.dwi.shape[:3] + (protocol_b.bvals.size,))
    full[..., b0] = s0[..., None]
    for pair, real_bval in zip(pairs, find_shells(data.bvals).bvals):
        resampled = (real[..., pair.source] @ pair.fit_source.T) @ pair.eval_target.T
        exponent = applied_bvals(scanner_b, protocol_b.bvals)[pair.target] / real_bval
        full[..., pair.target] = s0[..., None] * np.clip(resampled, MIN_ATTENUATION, None) ** exponent
    volumes = np.sort(np.concatenate([b0, *(pair.target for pair in pairs)]))
    protocol = protocol_b.select(volumes)
    noise = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    b, b_noise_free = acquire(full[..., volumes], protocol.bvals, scanner_b, float(np.median(s0[mask])), noise)
    return PairedSubject(name=name, a=replace(data, mask=mask), b=_dwi(b, protocol, mask), b_noise_free=b_noise_free)
