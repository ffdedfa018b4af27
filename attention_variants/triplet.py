"""Triplet attention (Misra et al., WACV 2021, arXiv:2010.03045)."""

from torch import Tensor, nn

from .cbam import CBAMSpatialGate
from .checks import check_choice
from .registry import register


@register(
    "triplet",
    paper="Misra et al., Rotate to Attend: Convolutional Triplet Attention Module, WACV 2021",
    option_help={
        "kernel_size": "odd size of each branch's conv (the authors publish 7 and 3)",
        "no_spatial": "drop the H-W branch and average the two rotated ones",
    },
)
class TripletAttention(nn.Module):
    """Triplet attention: CBAM's spatial gate ([max, mean] pool, k x k conv + BN, sigmoid) on
    three rotations of the map (C-W, H-C and H-W planes), averaged."""

    def __init__(self, channels: int, kernel_size: int = 7, no_spatial: bool = False):
        super().__init__()
        check_choice("triplet", "no_spatial", no_spatial, (False, True))
        gate = {"variant": "triplet", "option": "kernel_size"}
        self.cw = CBAMSpatialGate(kernel_size, **gate, zero_init=False)
        self.hc = CBAMSpatialGate(kernel_size, **gate, zero_init=False)
        # landskape-ai/triplet-attention's ResNet zero-initialises the BN of the H-W gate only
        self.hw = None if no_spatial else CBAMSpatialGate(kernel_size, **gate)

    def forward(self, x: Tensor) -> Tensor:
        # rotate so that H (then W) plays the channels' part, gate, rotate back
        cw = self.cw(x.permute(0, 2, 1, 3).contiguous()).permute(0, 2, 1, 3)
        hc = self.hc(x.permute(0, 3, 2, 1).contiguous()).permute(0, 3, 2, 1)
        if self.hw is None:
            return (cw + hc) / 2
        return (self.hw(x) + cw + hc) / 3
