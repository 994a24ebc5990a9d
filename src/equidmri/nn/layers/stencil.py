"""The isotropic 3x3x3 stencil: each distance class of a spatial kernel summed over its taps.

An isotropic 3x3x3 kernel has one weight per distance class ``||d|| in {0, 1, sqrt 2, sqrt 3}`` (the
centre, 6 faces, 12 edges, 8 corners). Once the channels are mixed into one map per class, the spatial
step is parameter-free: every class map is summed over its taps ('same' convolution, zero padding), on
feature maps ``(B, V, X, Y, Z, C)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_X, _Y, _Z = 2, 3, 4  # spatial axes of the (B, V, X, Y, Z, C) layout


def _add_shift_sum(out: Tensor, t: Tensor, axis: int) -> Tensor:
    """``out += t(x - e) + t(x + e)`` along ``axis``, zero padding ('same' convolution); returns ``out``."""
    n = t.shape[axis]
    out.narrow(axis, 1, n - 1).add_(t.narrow(axis, 0, n - 1))
    out.narrow(axis, 0, n - 1).add_(t.narrow(axis, 1, n - 1))
    return out


def _shift_sum(t: Tensor, axis: int) -> Tensor:
    """``t(x - e) + t(x + e)`` along ``axis`` with zero padding, written once (no zero fill)."""
    n = t.shape[axis]
    out = torch.empty_like(t)
    if n == 1:
        return out.zero_()
    torch.add(t.narrow(axis, 0, n - 2), t.narrow(axis, 2, n - 2), out=out.narrow(axis, 1, n - 2))
    out.narrow(axis, 0, 1).copy_(t.narrow(axis, 1, 1))
    out.narrow(axis, n - 1, 1).copy_(t.narrow(axis, n - 2, 1))
    return out


def _spread(out: Tensor | None, faces: Tensor, edges: Tensor, corners: Tensor) -> Tensor:
    """Add to ``out`` the sums of ``faces``/``edges``/``corners`` over the taps at distance 1, sqrt 2, sqrt 3.

    With ``A_x t = t(x - e_x) + t(x + e_x)`` (and likewise y, z) the three tap sums are
    ``(A_x + A_y + A_z) faces + (A_x A_y + A_x A_z + A_y A_z) edges + A_x A_y A_z corners``, evaluated in
    the nested form ``A_x [faces + A_z edges + A_y (edges + A_z corners)] + A_y [faces + A_z edges] + A_z faces``:
    about 13 passes over the maps instead of 19 for the expanded sum. ``out=None`` returns the tap sums
    alone, in a new tensor (one pass fewer than adding them to zeros).
    """
    y_arg = _shift_sum(edges, _Z).add_(faces)  # faces + A_z edges
    x_arg = _shift_sum(_shift_sum(corners, _Z).add_(edges), _Y).add_(y_arg)
    out = _shift_sum(x_arg, _X) if out is None else _add_shift_sum(out, x_arg, _X)
    _add_shift_sum(out, y_arg, _Y)
    return _add_shift_sum(out, faces, _Z)


class _IsotropicStencil(torch.autograd.Function):
    """Sum of per-class neighbour sums; its adjoint spreads the gradient back over the same taps."""

    @staticmethod
    def forward(ctx, centre: Tensor, faces: Tensor, edges: Tensor, corners: Tensor) -> Tensor:  # noqa: D102
        return _spread(centre.clone(), faces, edges, corners)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, ...]:  # noqa: D102 - the stencil is its own adjoint
        return grad, *class_sums(grad)


def isotropic_stencil(classes: Sequence[Tensor]) -> Tensor:
    """Sum each distance class over its 3x3x3 neighbours and add the classes.

    Parameters
    ----------
    classes : sequence of R Tensors of shape ``(B, V, X, Y, Z, C)`` (or one tensor ``(R, B, V, X, Y, Z, C)``)
        ``classes[r]`` is the map to spread over the taps at squared distance r (R = 4), or R = 1 (centre).

    Returns
    -------
    Tensor, shape ``(B, V, X, Y, Z, C)``
        ``out(x) = sum_r sum_{||d||^2 = r} classes[r](x + d)``, zero outside the volume.

    Raises
    ------
    ValueError
        If R is neither 1 nor 4.
    """
    if len(classes) == 1:
        return classes[0]
    if len(classes) != 4:
        raise ValueError(f"expected 1 or 4 distance classes on axis 0, got {len(classes)}")
    return _IsotropicStencil.apply(*classes)


def neighbour_sum(faces: Tensor, edges: Tensor, corners: Tensor) -> Tensor:
    """The stencil without its centre: each map summed over its taps at distance 1, sqrt 2 and sqrt 3.

    Parameters
    ----------
    faces, edges, corners : Tensor, shape ``(B, V, X, Y, Z, C)``
        Maps of the distance classes 1, 2, 3 (squared distance), as for :func:`isotropic_stencil`.

    Returns
    -------
    Tensor, shape ``(B, V, X, Y, Z, C)``
        ``isotropic_stencil((0, faces, edges, corners))``, in a new tensor; no autograd support (inference).
    """
    return _spread(None, faces, edges, corners)


def class_sums(t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Sums of ``t`` over its taps at distance 1, sqrt 2 and sqrt 3, one map per class (the stencil's adjoint).

    Parameters
    ----------
    t : Tensor, shape ``(B, V, X, Y, Z, C)``

    Returns
    -------
    faces, edges, corners : Tensors, shape ``(B, V, X, Y, Z, C)``
        ``sum_{||d||^2 = r} t(x + d)`` for r = 1, 2, 3, zero outside the volume; with
        ``A_x t = t(x - e_x) + t(x + e_x)``: ``(A_x + A_y + A_z) t``, ``(A_x A_y + A_x A_z + A_y A_z) t`` and
        ``A_x A_y A_z t``, in 4 shifted sums, one addition and 3 shifted additions.
    """
    t_x, t_y = _shift_sum(t, _X), _shift_sum(t, _Y)
    faces = _add_shift_sum(t_x + t_y, t, _Z)
    t_xy = _shift_sum(t_x, _Y)
    corners = _shift_sum(t_xy, _Z)
    edges = _add_shift_sum(_add_shift_sum(t_xy, t_x, _Z), t_y, _Z)  # in place: t_xy is not needed again
    return faces, edges, corners
