"""Building blocks of the spherical U-Nets."""

from equidmri.nn.blocks.conv_block import ConvBlock

__all__ = ["ConvBlock"]
