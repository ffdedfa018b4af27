"""Convolutional Block Attention Module (Woo et al., ECCV 2018, arXiv:1807.06521)."""

import torch
from torch import Tensor, nn

from .checks import check_int
from .registry import register
from .se import ChannelMLP


class CBAMChannelGate(nn.Module):
    """Average- and max-pooled descriptors through one shared MLP, summed, sigmoid."""

    def __init__(self, channels: int, reduction: int, bias: bool):
        super().__init__()
        self.mlp = ChannelMLP("cbam", channels, reduction, bias)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.mlp(x.mean((2, 3))) + self.mlp(x.amax((2, 3)))
        return x * logits.sigmoid()[:, :, None, None]


class CBAMSpatialGate(nn.Module):
    """Channel-wise [max, mean] maps, k x k conv (no bias) + BatchNorm, sigmoid."""

    def __init__(
        self,
        kernel_size: int,
        *,
        variant: str = "cbam",
        option: str = "spatial_kernel_size",
        zero_init: bool = True,
    ):
        super().__init__()
        check_int(variant, option, kernel_size, odd=True)
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        # eps and momentum as in the official implementation (Jongchan/attention-module)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)
        # its ResNet: every conv kaiming-normal (fan_out); the spatial gate's BN weight 0, so
        # the gate starts at sigmoid(0) everywhere
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out")
        if zero_init:
            nn.init.zeros_(self.bn.weight)

    def forward(self, x: Tensor) -> Tensor:
        maps = torch.cat((x.amax(1, keepdim=True), x.mean(1, keepdim=True)), dim=1)
        return x * self.bn(self.conv(maps)).sigmoid()


@register(
    "cbam",
    paper="Woo et al., CBAM: Convolutional Block Attention Module, ECCV 2018",
    option_help={
        "reduction": "the channel gate's MLP hidden width C // reduction (at least 1)",
        "spatial_kernel_size": "the spatial gate's conv size (odd; 7 in the paper)",
        "bias": "biases in the channel gate's MLP",
    },
)
class CBAM(nn.Module):
    """CBAM: a channel gate (shared MLP on avg and max pools) then a spatial gate (7x7 conv)."""

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        spatial_kernel_size: int = 7,
        bias: bool = True,
    ):
        super().__init__()
        self.channel_gate = CBAMChannelGate(channels, reduction, bias)
        self.spatial_gate = CBAMSpatialGate(spatial_kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial_gate(self.channel_gate(x))
