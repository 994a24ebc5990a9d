"""Equivariant layers on spatio-spherical feature maps ``(B, C, X, Y, Z, V)``."""

from equidmri.nn.layers.grid import SphereGrid
from equidmri.nn.layers.pooling import SphericalPool, SphericalUnpool
from equidmri.nn.layers.spatial import IsotropicConv3d, neighbours_as_channels
from equidmri.nn.layers.spatio_spherical import SpatioSphericalConv
from equidmri.nn.layers.stencil import isotropic_stencil

__all__ = ["SphereGrid", "SpatioSphericalConv", "SphericalPool", "SphericalUnpool", "isotropic_stencil",
           "IsotropicConv3d", "neighbours_as_channels"]
