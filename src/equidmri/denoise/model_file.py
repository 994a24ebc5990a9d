"""Trained denoisers as model files: data only (tensors, numbers, strings), read with ``weights_only=True``.

A file holds, as ``meta``, the architecture (:class:`~equidmri.denoise.networks.DenoiserSpec`), the training
acquisition's b-values and b-vectors and the training settings, and, as ``state_dict``, the learned weights (the
geometry is rebuilt for the acquisition the model is applied to), written atomically by
:func:`equidmri.recon.checkpoint.save_checkpoint`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from equidmri.denoise.networks import DenoiserSpec, SignalDenoiser
from equidmri.dmri.gradients import B0_THRESHOLD, find_shells
from equidmri.recon.checkpoint import load_model_file, save_checkpoint

MODEL_KIND = "equidmri-denoiser"
SHELL_MATCH = 20.0  # s/mm²: a shell of the scan matches the training shell within this (dipy's shell tolerance)

__all__ = ["MODEL_KIND", "load_denoiser", "save_denoiser"]


def save_denoiser(
    path: str | os.PathLike, network: SignalDenoiser, bvals: np.ndarray, bvecs: np.ndarray, training: dict[str, Any]
) -> Path:
    """Write ``network`` (trained on the acquisition ``bvals`` s/mm², ``bvecs``) and its ``training`` settings to
    ``path`` (``.pt``), atomically."""
    meta = {
        "kind": MODEL_KIND,
        "spec": network.spec.to_dict(),
        "bvals": [float(b) for b in bvals],
        "bvecs": np.asarray(bvecs, dtype=np.float64).tolist(),
        "training": training,
    }
    return save_checkpoint(path, {"meta": meta, "state_dict": network.state_dict()})


def load_denoiser(path: str | os.PathLike, bvals: np.ndarray, bvecs: np.ndarray) -> tuple[SignalDenoiser, dict]:
    """``(network, meta)``: the denoiser of ``path`` rebuilt for the acquisition ``bvals`` (s/mm²), ``bvecs``.

    A spherical denoiser applies to any scheme with the training shells (its weights act on SH coefficients); the
    dense one only to the training acquisition's volume count and b-values.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a denoiser model, or the acquisition's shells (dense: volumes) differ from the training
        acquisition's.
    equidmri.recon.checkpoint.UnsafeCheckpointError
        If it holds Python objects other than data.
    """
    content = load_model_file(path, MODEL_KIND, "denoiser model", "equidmri denoise train")
    meta = content["meta"]
    spec = DenoiserSpec(**meta["spec"])
    trained = np.asarray(meta["bvals"])
    bvals = np.asarray(bvals, dtype=np.float64)
    if spec.layer == "dense":
        same = bvals.size == trained.size and np.allclose(bvals, trained, atol=SHELL_MATCH)
        if not same:
            raise ValueError(f"the dense denoiser needs the training acquisition's {trained.size} volumes and b-values")
    else:
        have, want = find_shells(bvals).bvals, find_shells(trained).bvals
        if have.size != want.size or not np.allclose(have, want, atol=SHELL_MATCH):
            raise ValueError(
                f"the scan's shells {have.round().tolist()} s/mm² differ from the model's {want.round().tolist()}"
            )
    if not (bvals <= B0_THRESHOLD).any():
        raise ValueError("the scan has no b=0 volume (b <= 50 s/mm²) to normalise by")
    network = SignalDenoiser(spec, bvals, bvecs)
    network.load_state_dict(content["state_dict"])
    return network.eval(), meta
