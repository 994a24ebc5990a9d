"""The FA experiment's names and settings, in a module without torch, numpy or dipy.

:mod:`equidmri.microstructure.model`, ``.schemes``, ``.simulate``, ``.tensor`` and ``.train`` use them (and
re-export them); ``equidmri fa --help`` reads them here.
"""

from __future__ import annotations

from dataclasses import dataclass

MODELS = ("fcn", "scnn")  # FA networks output a scalar map, not an fODF: not methods of equidmri.methods
SCHEME_NAMES = ("skare", "jones")  # the 6-direction schemes of equidmri.microstructure.schemes.SCHEMES
ORIENTATIONS = ("random", "ap")  # simulated principal eigenvectors: uniformly random, or anterior-posterior
SNR = 20.0  # b=0 signal over the noise standard deviation, a clinical 3T value
B_VALUE = 1000.0  # s/mm², the clinical 6-direction shell (Goodwin-Allcock et al., CDMRI 2022)


@dataclass(frozen=True)
class FATrainConfig:
    """Training settings (the paper's, for both networks)."""

    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3  # Adam learning rate, dimensionless
    seed: int = 0
