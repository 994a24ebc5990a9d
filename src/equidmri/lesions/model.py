"""Lesion segmentation as a Model/Fit pair: the equivariant p×q-space network or the reference 3D CNN.

``LesionModel(network, bvals, bvecs, **options).fit(volumes) -> LesionFit``; ``LesionFit.predict(dwi, gtab,
mask)`` gives the lesion probability of every voxel. The networks:

- ``"pq"``: :class:`~equidmri.nn.models.pq_segmentation.PQSegmentationNet` (Müller, Golkov, Tomassini &
  Cremers, arXiv:2102.06942), bound to the q-vectors of the scan it is applied to, so any protocol whose
  q-lengths lie in the training range is accepted, and a rotated head with rotated b-vectors gives the rotated
  map;
- ``"cnn"``: :class:`~equidmri.nn.models.lesion_cnn.DWICNN`, the DWI volumes as channels; it accepts only
  scans with the training protocol's number of volumes. By default its width is the one whose parameter count
  is closest to that of the "pq" network with default options on the same acquisition.

Input of both: the DWI over the median b=0 signal in the mask, centred per shell and scaled to unit spread, zero
outside the mask, laid out ``(1, N, X, Y, Z)`` (:func:`network_input`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from dipy.core.gradients import GradientTable
from torch import nn

from equidmri.dmri.gradients import B0_THRESHOLD
from equidmri.nn.models.lesion_cnn import DWICNN

NETWORKS = ("pq", "cnn")
CNN_WIDTHS = range(1, 33)  # searched for the width matching the "pq" network's parameter count

__all__ = ["NETWORKS", "LesionFit", "LesionModel", "network_input", "parameter_count"]


def parameter_count(net: nn.Module) -> int:
    """Number of learned parameters."""
    return sum(p.numel() for p in net.parameters())


def network_input(dwi: np.ndarray, bvals: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    """``(1, N, X, Y, Z)`` float32: ``dwi`` ``(X, Y, Z, N)`` standardised per shell, 0 outside ``mask``.

    The signal is divided by the median b=0 signal in the mask (one number per scan, so T2-bright lesions stay
    bright); then each shell (the b=0 volumes and each DW shell of :func:`equidmri.dmri.gradients.find_shells`)
    has its median over the mask voxels and its volumes subtracted, and the whole is divided by its standard
    deviation in the mask. Typical tissue is then near 0 on every shell and lesions (less attenuation, brighter
    b=0) stand out on all of them. Every statistic pools all voxels and all directions of a shell, so a joint
    rotation of the image and the b-vectors leaves it unchanged. The first version's scan-wide centring (minus 1
    after the b=0 division) left the DW shells far below 0; per-shell centring with the batch normalisation of
    the p×q-space network made it learn (docs/lesions.md, "Diagnosis").

    Raises
    ------
    ValueError
        If the shapes disagree, the mask is empty, there is no b=0 or no DW volume, the median b=0 is not
        positive or the standardised signal is constant.
    """
    from equidmri.dmri.gradients import find_shells

    dwi, mask, bvals = np.asarray(dwi), np.asarray(mask, dtype=bool), np.asarray(bvals, dtype=float)
    if dwi.ndim != 4 or dwi.shape[:3] != mask.shape or dwi.shape[3] != len(bvals):
        raise ValueError(f"dwi (X, Y, Z, N), mask (X, Y, Z) and N b-values disagree: {dwi.shape}, {mask.shape}")
    b0 = bvals <= B0_THRESHOLD
    if not mask.any() or not b0.any():
        raise ValueError("the lesion networks need a non-empty mask and at least one b=0 volume")
    signal = dwi[mask].astype(np.float64)  # (M, N)
    scale = float(np.median(signal[:, b0]))
    if scale <= 0:
        raise ValueError(f"the median b=0 signal in the mask is {scale}, not positive")
    signal /= scale
    shell = find_shells(bvals).index  # -1: b=0
    for s in np.unique(shell):
        signal[:, shell == s] -= np.median(signal[:, shell == s])
    spread = float(signal.std())
    if spread == 0:
        raise ValueError("the standardised signal is constant in the mask")
    x = np.zeros(dwi.shape, dtype=np.float32)
    x[mask] = signal / spread
    return torch.from_numpy(np.moveaxis(x, -1, 0)[None].copy())


def q_vectors_of(bvals: np.ndarray, bvecs: np.ndarray) -> torch.Tensor:
    """q-vectors ``(N, 3)`` float64 of an acquisition (:func:`~equidmri.nn.layers.pq_space.q_space_vectors`)."""
    from equidmri.nn.layers.pq_space import q_space_vectors

    return q_space_vectors(torch.as_tensor(bvals, dtype=torch.float64), torch.as_tensor(bvecs, dtype=torch.float64))


def _pq_network(bvals: np.ndarray, bvecs: np.ndarray, options: dict[str, Any]) -> nn.Module:
    from equidmri.nn.models.pq_segmentation import PQSegmentationNet

    q = q_vectors_of(bvals, bvecs)
    return PQSegmentationNet(q.to(torch.get_default_dtype()), **options)


def _cnn_network(bvals: np.ndarray, bvecs: np.ndarray, options: dict[str, Any]) -> nn.Module:
    return DWICNN(len(bvals), **options)


def matching_cnn_width(bvals: np.ndarray, bvecs: np.ndarray, pq_options: dict[str, Any] | None = None) -> int:
    """The :class:`DWICNN` width whose parameter count is closest to the "pq" network's on this acquisition."""
    target = parameter_count(_pq_network(bvals, bvecs, _pq_defaults(bvals, bvecs, pq_options or {})))
    return min(CNN_WIDTHS, key=lambda w: abs(parameter_count(DWICNN(len(bvals), width=w)) - target))


def _pq_defaults(bvals: np.ndarray, bvecs: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
    """``q_max`` fixed to the training acquisition's largest q-length (the radial bases must not move later)."""
    q_max = float(q_vectors_of(bvals, bvecs).norm(dim=-1).max())
    return {"q_max": q_max if q_max > 0 else 1.0, **options}


@dataclass(frozen=True, eq=False)
class LesionFit:
    """A trained lesion network.

    Attributes
    ----------
    network : str
        ``"pq"`` or ``"cnn"``.
    net : nn.Module
    options : dict
        Constructor options of ``net`` (without the acquisition).
    bvals, bvecs : ndarray
        The training acquisition (s/mm²; voxel-axis frame).
    history : dict
        Training loss per epoch (``train``; ``val`` when validation volumes were given), ``best_epoch``, seconds.
    """

    network: str
    net: nn.Module
    options: dict[str, Any]
    bvals: np.ndarray
    bvecs: np.ndarray
    history: dict[str, Any] = field(default_factory=dict)

    def predict(self, dwi: np.ndarray, gtab: GradientTable, mask: np.ndarray) -> np.ndarray:
        """Lesion probability ``(X, Y, Z)`` float32 in [0, 1] of ``dwi`` ``(X, Y, Z, N)``; 0 outside ``mask``.

        Raises
        ------
        ValueError
            From :func:`network_input`; for "cnn", if N differs from the training acquisition's.
        """
        x = network_input(dwi, gtab.bvals, mask)
        if self.network == "cnn" and x.shape[1] != len(self.bvals):
            raise ValueError(
                f"the cnn model was trained on {len(self.bvals)} volumes and cannot take {x.shape[1]}; the "
                "equivariant 'pq' model accepts any protocol"
            )
        if self.network == "pq":
            self.net.set_q_vectors(q_vectors_of(gtab.bvals, gtab.bvecs).to(x.dtype))
        self.net.eval()
        with torch.no_grad():
            probability = self.net(x.to(next(self.net.parameters()).dtype))[0].numpy()
        return np.where(mask, probability, 0.0).astype(np.float32)


class LesionModel:
    """A lesion network bound to a training acquisition.

    Parameters
    ----------
    network : str
        One of :data:`NETWORKS`.
    bvals : ndarray, shape ``(N,)``
        s/mm².
    bvecs : ndarray, shape ``(N, 3)``
        Unit b-vectors, voxel-axis frame.
    **options
        Constructor options of the network (``PQSegmentationNet`` or ``DWICNN``, without the acquisition).

    Raises
    ------
    ValueError
        If ``network`` is unknown, or from the network's constructor.
    """

    def __init__(self, network: str, bvals: np.ndarray, bvecs: np.ndarray, **options: Any) -> None:
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, got {network!r}")
        self.network, self.bvals, self.bvecs = network, np.asarray(bvals, float), np.asarray(bvecs, float)
        if network == "pq":
            options = _pq_defaults(self.bvals, self.bvecs, options)
        elif "width" not in options:
            options = {"width": matching_cnn_width(self.bvals, self.bvecs), **options}
        self.options = options

    def build(self) -> nn.Module:
        """A freshly initialised network (torch's global generator)."""
        make = _pq_network if self.network == "pq" else _cnn_network
        return make(self.bvals, self.bvecs, self.options)

    def fit(self, train: list, val: list | None = None, **config: Any) -> LesionFit:
        """Train on ``train`` volumes (``LesionVolume``-like: ``dwi``, ``bvals``, ``bvecs``, ``mask``, ``labels``).

        ``config``: :class:`equidmri.lesions.train.TrainConfig` fields (epochs, learning rate, Dice weight,
        seed, progress callback). Returns the :class:`LesionFit` with the weights of the best validation epoch
        (the last epoch without ``val``).
        """
        from equidmri.lesions.train import TrainConfig, train_network

        net, history = train_network(self, train, val or [], TrainConfig(**config))
        return LesionFit(self.network, net, dict(self.options), self.bvals, self.bvecs, history)
