"""Point-wise companions of :class:`~equidmri.nn.layers.pq_space.PQConv` in the p×q-space network: the gated
nonlinearity, the equivariant batch normalisation and the q-length-weighted pooling of q-space (Müller, Golkov,
Tomassini & Cremers, arXiv:2102.06942, §3; e3nn's ``nn.Gate`` and ``nn.BatchNorm``). All act on
``(B, Q, X, Y, Z, D)`` fields, D the e3nn irreps dimension.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from equidmri.extras import require_extra
from equidmri.nn.layers.pq_space import radial_basis

require_extra("e3nn", "lesions", "the p×q-space layers (equidmri.nn.layers.pq_pointwise)")
from e3nn import o3  # noqa: E402
from e3nn.nn import BatchNorm, Gate  # noqa: E402


class QLengthPool(nn.Module):
    """Pool q-space: ``(B, Q, X, Y, Z, D) -> (B, 1, X, Y, Z, D)``, out = mean_q w_c(|q|) in(q).

    Each channel c has learned weights over a Gaussian radial basis of |q| (the reference code's
    q-length-weighted average pooling); they depend on |q| only, so the pooled tensors rotate as the inputs do.

    Parameters
    ----------
    irreps : str or ``o3.Irreps``
    q_vectors : Tensor, shape ``(Q, 3)``
    n_radial : int
    q_max : float, optional
        End of the radial basis; default the largest |q| (1 if all are zero).
    """

    def __init__(self, irreps: str | o3.Irreps, q_vectors: Tensor, n_radial: int = 2, q_max: float | None = None):
        super().__init__()
        self.irreps, self.n_radial, self.q_max = o3.Irreps(irreps), n_radial, q_max
        channel = torch.cat([torch.full((ir.dim,), c) for c, (_, ir) in enumerate(self._channels())])
        self.register_buffer("channel_of_dim", channel, persistent=False)
        self.weight = nn.Parameter(torch.ones(n_radial, len(self._channels())) / n_radial)
        self.set_q_vectors(q_vectors)

    def _channels(self) -> list[tuple[int, o3.Irrep]]:
        return [(1, ir) for mul, ir in self.irreps for _ in range(mul)]

    def set_q_vectors(self, q_vectors: Tensor) -> None:
        """Rebuild the radial basis for new q-samples (``(Q, 3)``)."""
        if q_vectors.ndim != 2 or q_vectors.shape[1] != 3:
            raise ValueError(f"q_vectors must have shape (Q, 3), got {tuple(q_vectors.shape)}")
        lengths = q_vectors.detach().to(torch.float64).cpu().norm(dim=-1)
        q_max = self.q_max if self.q_max is not None else float(lengths.max())
        basis = radial_basis(lengths, self.n_radial, q_max if q_max > 0 else 1.0)
        self.register_buffer(
            "basis", basis.to(self.weight.dtype).to(self.weight.device) / len(lengths), persistent=False
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 6 or x.shape[1] != self.basis.shape[0] or x.shape[-1] != self.irreps.dim:
            raise ValueError(f"expected (B, {self.basis.shape[0]}, X, Y, Z, {self.irreps.dim}), got {tuple(x.shape)}")
        weights = (self.basis @ self.weight)[:, self.channel_of_dim]  # (Q, D)
        return torch.einsum("bqxyzd,qd->bxyzd", x, weights)[:, None]

    def extra_repr(self) -> str:
        return f"{self.irreps}, Q={self.basis.shape[0]}, n_radial={self.n_radial}"


def gated(irreps: str | o3.Irreps) -> Gate:
    """e3nn ``Gate`` whose output is ``irreps``: swish (SiLU) on the 0e scalars, each l > 0 channel scaled by the
    sigmoid of its own 0e gate; a layer feeding it must output ``gate.irreps_in`` (scalars + gates + gated).

    Raises
    ------
    ValueError
        If ``irreps`` holds pseudo-scalars (0o), which this block does not gate.
    """
    irreps = o3.Irreps(irreps)
    if any(ir.l == 0 and ir.p == -1 for _, ir in irreps):
        raise ValueError(f"hidden irreps take 0e scalars only, got {irreps}")
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps if ir.l == 0])
    tensors = o3.Irreps([(mul, ir) for mul, ir in irreps if ir.l > 0])
    gates = o3.Irreps(f"{tensors.num_irreps}x0e")
    return Gate(scalars, [nn.functional.silu] * len(scalars), gates, [torch.sigmoid] * len(gates), tensors)


def normalised(irreps: str | o3.Irreps, enabled: bool = True) -> list[nn.Module]:
    """``[e3nn BatchNorm(irreps)]`` (or ``[]`` when not ``enabled``) for ``(B, Q, X, Y, Z, D)`` fields.

    Statistics pool the batch, q-samples and voxels: scalars (0e) are centred and scaled, each l > 0 channel is
    scaled by its mean squared norm, so the layer commutes with joint rotations of p- and q-space (e3nn's
    equivariant batch normalisation; running statistics in eval mode).
    """
    return [BatchNorm(o3.Irreps(irreps))] if enabled else []
