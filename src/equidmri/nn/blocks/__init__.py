"""Building blocks of the spherical U-Nets."""

from equidmri.nn.blocks.conv_block import ConvBlock, fold_batchnorm

__all__ = ["ConvBlock", "fold_batchnorm"]
