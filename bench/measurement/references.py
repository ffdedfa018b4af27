"""Reference kernels measured beside every variant, so overheads are ratios from one run.

`identity` comes from the registry (the zero-cost block); these two give the other anchors:
the same-shape 3x3 convolution that an attention block decorates, and a plain copy of the input
(the memory-bandwidth floor for blocks that read and write the feature map once).
"""

from torch import Tensor, nn


class Conv3x3(nn.Conv2d):
    """C -> C, 3x3, padding 1, no bias: the convolution an attention block sits beside."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, padding=1, bias=False)


class Copy(nn.Module):
    """Reads the input once and writes it once: the floor for a memory-bound block."""

    def __init__(self, channels: int):
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x.clone()


REFERENCES = {"conv3x3": Conv3x3, "copy": Copy}

# every reference a sweep measures beside its variants, in the order tables show them;
# `PAIRED` is the one timed right after each sample of a variant
REFERENCE_NAMES = ("identity", "copy", "conv3x3")
PAIRED = "copy"
