"""Coordinate attention (Hou et al., CVPR 2021, arXiv:2103.02907)."""

import math

import torch
from torch import Tensor, nn

from .checks import check_int
from .registry import register


@register(
    "coord",
    paper="Hou et al., Coordinate Attention for Efficient Mobile Network Design, CVPR 2021",
    option_help={"reduction": "hidden width max(8, C // reduction)"},
)
class CoordAttention(nn.Module):
    """Coordinate attention: pools along H and along W, a shared 1x1 conv + BN + h-swish, then
    a sigmoid gate per direction; the hidden width is max(8, C // reduction)."""

    def __init__(self, channels: int, reduction: int = 32):
        super().__init__()
        check_int("coord", "reduction", reduction)
        hidden = max(8, channels // reduction)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(hidden, channels, 1)
        self.conv_w = nn.Conv2d(hidden, channels, 1)
        for conv in (self.conv1, self.conv_h, self.conv_w):
            # houqb/CoordAttention's MobileNetV2 initialises every conv N(0, 2 / (k*k*out))
            nn.init.normal_(conv.weight, 0, math.sqrt(2.0 / conv.out_channels))
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2:]
        pooled = torch.cat((x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(2, 3)), 2)
        y = self.act(self.bn1(self.conv1(pooled)))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        a_h = self.conv_h(y_h).sigmoid()  # (b, c, h, 1)
        a_w = self.conv_w(y_w.transpose(2, 3)).sigmoid()  # (b, c, 1, w)
        return x * a_w * a_h
