"""The no-attention baseline that every overhead is measured against."""

from torch import Tensor, nn

from .registry import register


@register("identity", paper="(baseline: no attention)")
class Identity(nn.Module):
    """Returns its input unchanged; the zero-cost reference for overheads."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        return x
