"""An FA regressor bound to its inputs: network, training scheme, b-value and checkpoint I/O.

``FAModel.inputs`` turns any acquisition (a b=0 volume and >= 6 directions at b ≈ 1000 s/mm²) into the
network's inputs:

- ``fcn``: the 6 acquired directions nearest (antipodally) to the training scheme's, in its order
  (:func:`~equidmri.microstructure.schemes.select_subset`), divided by the mean b=0 signal;
- ``scnn``: the dipy tensor fit to every b=0 and b ≈ 1000 volume, as an ADC profile on V+ (µm²/ms).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np
from dipy.core.gradients import GradientTable
from torch import nn

from equidmri.dmri.gradients import B0_THRESHOLD
from equidmri.microstructure.config import MODELS
from equidmri.microstructure.networks import FCN, SCNN_NSIDE, SphericalCNN
from equidmri.microstructure.schemes import check_tensor_scheme, get_scheme, select_subset
from equidmri.microstructure.tensor import B_VALUE, adc_profile, fit_tensors
from equidmri.microstructure.train import predict_fa
from equidmri.recon.checkpoint import load_checkpoint, save_checkpoint

BVAL_TOLERANCE = 0.2  # relative; b-values within ±20% of the training b-value form the shell used
CHECKPOINT_KIND = "fa"  # meta['kind'] of FA model checkpoints
MIN_B0_SIGNAL = 1e-6  # scanner units; b=0 signals below this give zero normalised signals


@dataclass
class FAModel:
    """A network trained on one 6-direction scheme at one b-value.

    Attributes
    ----------
    name : {"fcn", "scnn"}
    scheme : str
        Training scheme (``"skare"`` or ``"jones"``).
    bval : float
        Training b-value, s/mm².
    nside : int
        HEALPix resolution of the S-CNN's ADC profile (unused by the FCN).
    net : nn.Module
        The network (``network`` is its deprecated name).

    Training is :func:`equidmri.microstructure.train.train_fa_model`, outside the model.
    """

    name: str
    scheme: str
    bval: float = B_VALUE
    nside: int = SCNN_NSIDE
    net: nn.Module = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.name!r}")
        get_scheme(self.scheme)
        if self.net is None:
            self.net = FCN() if self.name == "fcn" else SphericalCNN(self.nside)

    @property
    def network(self) -> nn.Module:
        """Deprecated name of :attr:`net` (kept for one minor release)."""
        warnings.warn("FAModel.network is deprecated; use FAModel.net", DeprecationWarning, stacklevel=2)
        return self.net

    def shell(self, gtab: GradientTable) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the b=0 volumes and of the diffusion-weighted volumes within ``BVAL_TOLERANCE`` of ``bval``.

        Raises
        ------
        ValueError
            If there is no b=0 volume, or the directions at this b-value cannot determine a tensor
            (fewer than 6 non-collinear directions, or a degenerate scheme).
        """
        b0 = np.flatnonzero(gtab.bvals <= B0_THRESHOLD)
        if b0.size == 0:
            raise ValueError(f"no b=0 volume (b <= {B0_THRESHOLD} s/mm²) found")
        dw = np.flatnonzero(np.abs(gtab.bvals - self.bval) <= BVAL_TOLERANCE * self.bval)
        if dw.size == 0:
            raise ValueError(
                f"no volume at b ≈ {self.bval:g} s/mm² (±{BVAL_TOLERANCE:.0%}); the model was trained "
                f"at {self.bval:g} s/mm², b-values given: {sorted(set(np.round(gtab.bvals)))}"
            )
        check_tensor_scheme(gtab.bvecs[dw])
        return b0, dw

    def inputs(self, signals: np.ndarray, gtab: GradientTable) -> np.ndarray:
        """Network inputs ``(M, F)`` float32 of the signals ``(M, N)`` of ``gtab``'s N volumes (module docstring)."""
        b0, dw = self.shell(gtab)
        if self.name == "scnn":
            volumes = np.concatenate([b0, dw])
            sub = GradientTable(gtab.gradients[volumes], b0_threshold=B0_THRESHOLD)
            return adc_profile(fit_tensors(signals[:, volumes], sub), self.nside)
        s0 = signals[:, b0].mean(axis=1, keepdims=True)
        chosen = signals[:, dw[select_subset(gtab.bvecs[dw], get_scheme(self.scheme))]]
        return np.divide(chosen, s0, out=np.zeros_like(chosen, dtype=np.float64), where=s0 > MIN_B0_SIGNAL).astype(
            np.float32
        )

    def predict(self, signals: np.ndarray, gtab: GradientTable) -> np.ndarray:
        """FA ``(M,)`` predicted from the signals ``(M, N)`` of ``gtab``'s volumes."""
        return predict_fa(self.net, self.inputs(signals, gtab))

    def save(self, path: str | os.PathLike) -> None:
        """Write the checkpoint atomically (:func:`~equidmri.recon.checkpoint.save_checkpoint`)."""
        meta = {
            "kind": CHECKPOINT_KIND,
            "name": self.name,
            "scheme": self.scheme,
            "bval": self.bval,
            "nside": self.nside,
        }
        save_checkpoint(path, {"meta": meta, "state_dict": self.net.state_dict()})

    @classmethod
    def load(cls, path: str | os.PathLike) -> FAModel:
        """Read a checkpoint written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If the file is not an FA model checkpoint.
        """
        state = load_checkpoint(path)
        meta = state["meta"]
        if meta.get("kind") != CHECKPOINT_KIND:
            raise ValueError(f"{path} is not an FA model (written by `equidmri fa train`)")
        model = cls(meta["name"], meta["scheme"], meta["bval"], meta["nside"])
        model.net.load_state_dict(state["state_dict"])
        model.net.eval()
        return model
