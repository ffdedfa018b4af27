"""Shuffle attention (Zhang and Yang, SA-Net, ICASSP 2021, arXiv:2102.00240)."""

import torch
from torch import Tensor, nn

from .checks import check_groups
from .registry import register


@register(
    "shuffle",
    paper="Zhang and Yang, SA-Net: Shuffle Attention for Deep CNNs, ICASSP 2021",
    option_help={"groups": "channel groups, each split into a channel and a spatial half; "
                 "2 * groups must divide C"},
)  # fmt: skip
class ShuffleAttention(nn.Module):
    """Shuffle attention: channels split into groups, each half a channel gate (mean, scale,
    shift, sigmoid) and half a spatial gate (GroupNorm, scale, shift, sigmoid), then a channel
    shuffle that mixes the groups."""

    def __init__(self, channels: int, groups: int = 64):
        super().__init__()
        self.groups = check_groups("shuffle", groups, channels, per_group=2)
        half = channels // (2 * groups)
        # wofmanaf/SA-Net: weights 0 and biases 1, so both gates start at sigmoid(1)
        self.cweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.gn = nn.GroupNorm(half, half)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        channel_half, spatial_half = x.reshape(b * self.groups, -1, h, w).chunk(2, dim=1)
        pooled = channel_half.mean((2, 3), keepdim=True)
        channel = channel_half * (self.cweight * pooled + self.cbias).sigmoid()
        spatial = spatial_half * (self.sweight * self.gn(spatial_half) + self.sbias).sigmoid()
        out = torch.cat((channel, spatial), dim=1).reshape(b, c, h, w)
        # shuffle with 2 groups: channel i of the first half next to channel i of the second
        return out.reshape(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)
