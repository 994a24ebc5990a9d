"""What the iterative methods share: the acquisition, the responses (given or estimated) and the Fit.

An iterative method fits each volume on its own. It is bound to a gradient table and, optionally, to tissue
responses; without them, :meth:`IterativeMethod.fit` estimates them inside the mask
(:func:`equidmri.dmri.response.estimate_responses`), as ``equidmri deconv`` does.
"""

from __future__ import annotations

import math

import numpy as np
from dipy.core.gradients import GradientTable

from equidmri.dmri.gradients import find_shells
from equidmri.dmri.mask import check_mask
from equidmri.dmri.response import TissueResponses, estimate_responses
from equidmri.recon.model import FODFFit
from equidmri.sphere.sh import check_lmax

__all__ = ["IterativeMethod", "volume_responses", "wm_fit"]


def volume_responses(
    gtab: GradientTable, responses: TissueResponses | None, dwi: np.ndarray, mask: np.ndarray
) -> TissueResponses:
    """``responses`` when given, else those estimated from ``dwi`` inside ``mask`` (as ``equidmri deconv`` does).

    Raises
    ------
    ValueError
        As :func:`equidmri.dmri.response.estimate_responses` (too few WM voxels, no GM/CSF voxel).
    """
    if responses is not None:
        return responses
    return estimate_responses(dwi, gtab, mask, find_shells(gtab.bvals))


def wm_fit(fodf_sh: np.ndarray, mask: np.ndarray, lmax: int) -> FODFFit:
    """A single-tissue :class:`FODFFit`: the WM fraction is the fODF integral, ``sqrt(4π) c_00``.

    Parameters
    ----------
    fodf_sh : ndarray, shape ``(X, Y, Z, K)``
        WM fODF, ``descoteaux07`` (``legacy=False``), voxel-axis frame, zeros outside ``mask``.
    mask : ndarray, shape ``(X, Y, Z)`` bool
    lmax : int
        Output degree (``shm_coeff``, peaks).
    """
    fraction = fodf_sh[..., :1] * math.sqrt(4 * math.pi)
    return FODFFit(fodf_sh=fodf_sh, fractions=fraction, tissues=("wm",), mask=mask, lmax=lmax)


class IterativeMethod:
    """Base class: ``fit(dwi, mask)`` calls :meth:`fit_sh` with the responses and returns a :class:`FODFFit`.

    Parameters
    ----------
    gtab : GradientTable
        The acquisition (b-values in s/mm², b-vectors in the voxel-axis frame), with a b=0 volume.
    responses : TissueResponses, optional
        Responses on the shells of ``gtab``; default: estimated in :meth:`fit` from the volume and its mask.
    lmax : int
        Even degree of the fODF.

    Raises
    ------
    TypeError
        If ``gtab`` is not a dipy ``GradientTable``.
    ValueError
        If ``lmax`` is odd or negative.
    """

    def __init__(self, gtab: GradientTable, responses: TissueResponses | None = None, *, lmax: int = 8) -> None:
        if not isinstance(gtab, GradientTable):
            raise TypeError(f"gtab must be a dipy GradientTable, got {type(gtab).__name__}")
        self.gtab, self.responses, self.lmax = gtab, responses, check_lmax(lmax)

    def fit(self, dwi: np.ndarray, mask: np.ndarray | None = None) -> FODFFit:
        """Deconvolve ``dwi`` ``(X, Y, Z, N)`` (scanner units) inside ``mask`` (default: every voxel).

        Raises
        ------
        ValueError
            If ``dwi`` does not match ``gtab``, the mask's shape differs, or the responses cannot be estimated.
        """
        inside = check_mask(mask, np.shape(dwi)[:3])
        return self.fit_sh(np.asarray(dwi), inside, volume_responses(self.gtab, self.responses, dwi, inside))

    def fit_sh(self, dwi: np.ndarray, mask: np.ndarray, responses: TissueResponses) -> FODFFit:
        """The method itself (subclasses)."""
        raise NotImplementedError
