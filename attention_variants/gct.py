"""Gated channel transformation (Yang et al., CVPR 2020, arXiv:1909.11519)."""

import torch
from torch import Tensor, nn

from .checks import check_choice, check_positive_number
from .registry import register


@register(
    "gct",
    paper="Yang et al., Gated Channel Transformation for Visual Recognition, CVPR 2020",
    option_help={
        "epsilon": "added inside the norms (numerical safety)",
        "mode": "l2 or l1: the norm that embeds each channel",
        "after_relu": "l1 only: the input is non-negative, skip the absolute value",
    },
)
class GatedChannelTransform(nn.Module):
    """GCT: each channel's l2 (or l1) norm embedded with alpha, normalised across channels,
    then a 1 + tanh(gamma * . + beta) gate; gamma and beta start at 0, so it starts as identity."""

    def __init__(
        self, channels: int, epsilon: float = 1e-5, mode: str = "l2", after_relu: bool = False
    ):
        super().__init__()
        self.epsilon = check_positive_number("gct", "epsilon", epsilon)
        self.mode = check_choice("gct", "mode", mode, ("l2", "l1"))
        self.after_relu = check_choice("gct", "after_relu", after_relu, (False, True))
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "l2":
            embedding = (x.square().sum((2, 3), keepdim=True) + self.epsilon).sqrt() * self.alpha
            norm = self.gamma / (embedding.square().mean(1, keepdim=True) + self.epsilon).sqrt()
        else:
            # after a ReLU the input is non-negative and the absolute value can be skipped
            magnitude = x if self.after_relu else x.abs()
            embedding = magnitude.sum((2, 3), keepdim=True) * self.alpha
            norm = self.gamma / (embedding.abs().mean(1, keepdim=True) + self.epsilon)
        return x * (1 + torch.tanh(embedding * norm + self.beta))
