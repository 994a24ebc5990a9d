"""The equivariant voxel-wise segmentation network of Müller, Golkov, Tomassini & Cremers (arXiv:2102.06942).

DWI (scalars on voxels × q-samples) -> p×q-space layers with gated nonlinearities -> q-space pooled away ->
p-space layers -> one probability per voxel. Every layer is a :class:`~equidmri.nn.layers.pq_space.PQConv`;
after the pooling the q-axis holds one sample at q = 0, where the kernel's q-part is constant and the layer is
the paper's p-space layer (Δq = 0 keeps only l_q = 0, so l_f = l_p). The network commutes with joint
roto-translations of the image and rotations of the q-vectors, and its output is invariant (a 0e scalar).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from equidmri.nn.layers.pq_pointwise import QLengthPool, gated, normalised
from equidmri.nn.layers.pq_space import PQConv

DWI_IRREPS = "1x0e"  # the signal: one scalar per voxel and q-sample
# Hidden channels of the p×q-space and the p-space layers (after pooling). Both kernels reach 0e, 1o and 2e from
# the DWI's scalars; 1e (pseudo-vectors, e.g. Y_1(Δp) × Y_1(Δq)) only the tp kernel does, so the defaults leave it out.
DEFAULT_PQ_IRREPS = ("4x0e + 2x1o + 2x2e",) * 2
DEFAULT_P_IRREPS = ("4x0e + 2x1o + 2x2e",) * 2


class PQSegmentationNet(nn.Module):
    """Voxel-wise probabilities from a DWI on voxels × q-samples: ``(B, Q, X, Y, Z) -> (B, X, Y, Z)`` in (0, 1).

    ``len(pq_irreps)`` p×q-space layers, q-length-weighted pooling of q-space, ``len(p_irreps)`` p-space
    layers and a p-space head to one scalar, then a sigmoid: with the defaults the paper's five layers
    (2 + 2 + 1). Every hidden layer is followed by a gated nonlinearity (:func:`gated`).

    Parameters
    ----------
    q_vectors : Tensor, shape ``(Q, 3)``
        q-vectors of the acquisition (:func:`~equidmri.nn.layers.pq_space.q_space_vectors`).
    pq_irreps, p_irreps : sequence of str
        Hidden irreps of each p×q-space and p-space layer.
    kernel : {"tp", "combined"}
        Kernel of the p×q-space layers (:class:`PQConv`).
    kernel_size, lmax_p, lmax_q, n_radial_p, n_radial_q, q_max
        As in :class:`PQConv`; the p-space layers use ``lmax_p``, ``n_radial_p`` and one q radial function.
    norm : bool
        An equivariant batch normalisation (:func:`normalised`) between each hidden layer's convolution and its
        gate. Without it the activations grow from layer to layer at initialisation (logits of standard
        deviation 9–18 on two lesion phantoms) and training stalled near the class prior (docs/lesions.md,
        "Diagnosis"); the paper does not say.

    Raises
    ------
    ValueError
        From :class:`PQConv` and :func:`gated`; if ``pq_irreps`` is empty.

    References
    ----------
    Müller, Golkov, Tomassini & Cremers, arXiv:2102.06942 (2021), §3–4.
    """

    def __init__(
        self,
        q_vectors: Tensor,
        pq_irreps: Sequence[str] = DEFAULT_PQ_IRREPS,
        p_irreps: Sequence[str] = DEFAULT_P_IRREPS,
        kernel: str = "tp",
        kernel_size: int = 3,
        lmax_p: int = 1,
        lmax_q: int = 2,
        n_radial_p: int = 2,
        n_radial_q: int = 2,
        q_max: float | None = None,
        norm: bool = True,
    ) -> None:
        super().__init__()
        if not pq_irreps:
            raise ValueError("need at least one p×q-space layer (pq_irreps is empty)")
        self.pq_irreps, self.p_irreps = tuple(pq_irreps), tuple(p_irreps)
        pq_args = {"kernel": kernel, "kernel_size": kernel_size, "lmax_p": lmax_p, "lmax_q": lmax_q}
        pq_args.update(n_radial_p=n_radial_p, n_radial_q=n_radial_q, q_max=q_max)
        p_args = {"kernel_size": kernel_size, "lmax_p": lmax_p, "lmax_q": 0, "n_radial_p": n_radial_p}
        p_args.update(n_radial_q=1)
        pooled_q = torch.zeros(1, 3, dtype=q_vectors.dtype)
        self.pq_layers, self.p_layers = nn.ModuleList(), nn.ModuleList()
        irreps = DWI_IRREPS
        for hidden in self.pq_irreps:
            gate = gated(hidden)
            conv = PQConv(irreps, gate.irreps_in, q_vectors, **pq_args)
            self.pq_layers.append(nn.Sequential(conv, *normalised(gate.irreps_in, norm), gate))
            irreps = gate.irreps_out
        self.pool = QLengthPool(irreps, q_vectors, n_radial=n_radial_q, q_max=q_max)
        for hidden in self.p_irreps:
            gate = gated(hidden)
            conv = PQConv(irreps, gate.irreps_in, pooled_q, **p_args)
            self.p_layers.append(nn.Sequential(conv, *normalised(gate.irreps_in, norm), gate))
            irreps = gate.irreps_out
        self.head = PQConv(irreps, "1x0e", pooled_q, **p_args)

    def set_q_vectors(self, q_vectors: Tensor) -> None:
        """Bind the network to other q-samples (another acquisition, or rotated b-vectors); weights are kept."""
        for block in self.pq_layers:
            block[0].set_q_vectors(q_vectors)
        self.pool.set_q_vectors(q_vectors)

    def logits(self, dwi: Tensor) -> Tensor:
        """Pre-sigmoid scores ``(B, X, Y, Z)`` of ``dwi`` ``(B, Q, X, Y, Z)`` (for a logit loss in training).

        Raises
        ------
        ValueError
            If ``dwi`` is not 5-dimensional or its Q differs from the network's.
        """
        if dwi.ndim != 5:
            raise ValueError(f"expected dwi (B, Q, X, Y, Z), got {tuple(dwi.shape)}")
        x = dwi[..., None]
        for block in self.pq_layers:
            x = block(x)
        x = self.pool(x)
        for block in self.p_layers:
            x = block(x)
        return self.head(x)[:, 0, ..., 0]

    def forward(self, dwi: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(dwi))

    def extra_repr(self) -> str:
        return f"pq_irreps={list(self.pq_irreps)}, p_irreps={list(self.p_irreps)}"
