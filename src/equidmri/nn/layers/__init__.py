"""Equivariant layers on spherical and spatio-spherical feature maps: every layer of the package lives here.

The p×q-space layers (:mod:`equidmri.nn.layers.pq_space`, :mod:`equidmri.nn.layers.pq_pointwise`) need e3nn,
the ``lesions`` extra: their names are imported on first use, so that this package imports without it.
"""

from equidmri.lazy import lazy_attributes
from equidmri.nn.layers.grid import SphereGrid
from equidmri.nn.layers.operator_chebyshev import OperatorChebyshevConv
from equidmri.nn.layers.pooling import SphericalPool, SphericalUnpool
from equidmri.nn.layers.sh_degree import SHDegreeLinear, SHSpaceActivation, SignalSpaceActivation
from equidmri.nn.layers.sh_spatial import SHSpatialConv
from equidmri.nn.layers.spatial import IsotropicConv3d, NeighboursAsChannels, neighbours_as_channels
from equidmri.nn.layers.spatio_spherical import SpatioSphericalConv
from equidmri.nn.layers.stencil import isotropic_stencil

_PUBLIC = {  # name -> its module, imported on first use (e3nn)
    "PQConv": "equidmri.nn.layers.pq_space",
    "QLengthPool": "equidmri.nn.layers.pq_pointwise",
    "gated": "equidmri.nn.layers.pq_pointwise",
    "q_space_vectors": "equidmri.nn.layers.pq_space",
}

__all__ = [
    "PQConv",
    "QLengthPool",
    "gated",
    "q_space_vectors",
    "SphereGrid",
    "SpatioSphericalConv",
    "SphericalPool",
    "SphericalUnpool",
    "isotropic_stencil",
    "IsotropicConv3d",
    "NeighboursAsChannels",
    "OperatorChebyshevConv",
    "SHDegreeLinear",
    "SHSpaceActivation",
    "SHSpatialConv",
    "SignalSpaceActivation",
    "neighbours_as_channels",
]

__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
