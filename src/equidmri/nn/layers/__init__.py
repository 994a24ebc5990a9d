"""Equivariant layers on spherical and spatio-spherical feature maps: every layer of the package lives here."""

from equidmri.nn.layers.grid import SphereGrid
from equidmri.nn.layers.operator_chebyshev import OperatorChebyshevConv
from equidmri.nn.layers.pooling import SphericalPool, SphericalUnpool
from equidmri.nn.layers.sh_spatial import SHSpatialConv
from equidmri.nn.layers.spatial import IsotropicConv3d, NeighboursAsChannels, neighbours_as_channels
from equidmri.nn.layers.spatio_spherical import SpatioSphericalConv
from equidmri.nn.layers.stencil import isotropic_stencil

__all__ = [
    "SphereGrid",
    "SpatioSphericalConv",
    "SphericalPool",
    "SphericalUnpool",
    "isotropic_stencil",
    "IsotropicConv3d",
    "NeighboursAsChannels",
    "OperatorChebyshevConv",
    "SHSpatialConv",
    "neighbours_as_channels",
]
