"""The self-adaptive signal autoencoder: a voxel-wise dense network whose widths follow the acquisition.

"Self-adaptive" (Sadegheih, Weninger & Merhof 2023): the same design serves any protocol, because every layer's
width is a fixed fraction of the number of volumes N of the acquisition it is built for. Ours: N → ⌈N/2⌉ → ⌈N/4⌉
(the code) → ⌈N/2⌉ → N, never narrower than ``MIN_WIDTH`` (6, the unknowns of a diffusion tensor), ReLU between the
layers and a linear output (b0-normalised signals are about 1 at b=0 and may exceed 1 with noise). The fractions
are our choice, not the paper's.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

HIDDEN_FRACTION = 0.5  # width of the hidden layers, fraction of the N volumes
CODE_FRACTION = 0.25  # width of the code (bottleneck), fraction of N
MIN_WIDTH = 6  # neurons: the six unknowns of a diffusion tensor

__all__ = ["SelfAdaptiveAutoencoder", "autoencoder_widths"]


def autoencoder_widths(n_volumes: int) -> tuple[int, int, int, int, int]:
    """Widths ``(N, hidden, code, hidden, N)`` of the autoencoder for N volumes (see the module docstring).

    Raises
    ------
    ValueError
        If ``n_volumes`` is not an integer >= 1.
    """
    if isinstance(n_volumes, bool) or not isinstance(n_volumes, int) or n_volumes < 1:
        raise ValueError(f"n_volumes must be an integer >= 1, got {n_volumes!r}")
    hidden = max(MIN_WIDTH, math.ceil(n_volumes * HIDDEN_FRACTION))
    code = max(MIN_WIDTH, math.ceil(n_volumes * CODE_FRACTION))
    return n_volumes, hidden, code, hidden, n_volumes


class SelfAdaptiveAutoencoder(nn.Module):
    """Dense autoencoder of b0-normalised signals ``(B, N)`` → ``(B, N)`` with widths :func:`autoencoder_widths`.

    Parameters
    ----------
    n_volumes : int
        N, the volumes of the acquisition (b=0 included).

    Raises
    ------
    ValueError
        As :func:`autoencoder_widths`.
    """

    def __init__(self, n_volumes: int) -> None:
        super().__init__()
        self.widths = autoencoder_widths(n_volumes)
        self.n_volumes = n_volumes
        n, hidden, code = self.widths[:3]
        self.encoder = nn.Sequential(nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, code), nn.ReLU())
        self.decoder = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, n))

    def extra_repr(self) -> str:
        return f"widths={self.widths}"

    def encode(self, signals: Tensor) -> Tensor:
        """Code ``(B, code)`` of signals ``(B, N)``.

        Raises
        ------
        ValueError
            If the last axis is not N.
        """
        if signals.shape[-1] != self.n_volumes:
            raise ValueError(f"expected signals (..., {self.n_volumes}), got {tuple(signals.shape)}")
        return self.encoder(signals)

    def forward(self, signals: Tensor) -> Tensor:
        """Reconstructed signals ``(B, N)``, dimensionless (same errors as :meth:`encode`)."""
        return self.decoder(self.encode(signals))
