"""Spatial group-wise enhance (Li et al., 2019, arXiv:1905.09646)."""

import torch
from torch import Tensor, nn

from .checks import check_groups
from .registry import register


@register(
    "sge",
    paper="Li et al., Spatial Group-wise Enhance: Improving Semantic Feature Learning in "
    "Convolutional Networks, 2019",
    option_help={"groups": "channel groups, each gated on its own; must divide C"},
)
class SpatialGroupEnhance(nn.Module):
    """SGE: per group of channels, the similarity of each position to the group's mean feature,
    standardised over positions, scaled and shifted per group, gates the group (sigmoid)."""

    def __init__(self, channels: int, groups: int = 64):
        super().__init__()
        self.groups = check_groups("sge", groups, channels)
        # implus/PytorchInsight: weight 0 and bias 1, so every gate starts at sigmoid(1)
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        grouped = x.reshape(b * self.groups, c // self.groups, h, w)
        similarity = (grouped * grouped.mean((2, 3), keepdim=True)).sum(1).flatten(1)
        centred = similarity - similarity.mean(1, keepdim=True)
        # the unbiased std of one position is undefined: a 1x1 map standardises to 0
        std = centred.std(1, keepdim=True, correction=1 if h * w > 1 else 0) + 1e-5
        t = (centred / std).view(b, self.groups, h, w) * self.weight + self.bias
        gated = grouped * t.view(b * self.groups, 1, h, w).sigmoid()
        return gated.reshape(b, c, h, w)
