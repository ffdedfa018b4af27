"""Efficient Channel Attention (Wang et al., CVPR 2020, arXiv:1910.03151)."""

import math

from torch import Tensor, nn

from .checks import check_int, check_positive_number
from .registry import register


def eca_kernel_size(channels: int, gamma: float = 2, beta: float = 1) -> int:
    """The paper's adaptive kernel size: |log2(C)/gamma + b/gamma| rounded up to odd."""
    t = int(abs((math.log2(channels) + beta) / gamma))
    return t if t % 2 else t + 1


ECA_OPTION_HELP = {
    "kernel_size": "the 1-D conv's width; None: adaptive, |log2(C) / gamma + beta / gamma| "
    "made odd",
    "gamma": "the adaptive kernel size's slope (the paper's gamma)",
    "beta": "the adaptive kernel size's offset (the paper's b)",
}


@register(
    "eca",
    paper="Wang et al., ECA-Net: Efficient Channel Attention, CVPR 2020",
    option_help=ECA_OPTION_HELP,
)
class ECA(nn.Module):
    """ECA: global average pool, 1-D conv across channels (k adaptive), sigmoid, scale.

    `beta` is the paper's `b`; with `kernel_size=None` the kernel size is chosen from
    `channels`, `gamma` and `beta` (k = 3, 5, 5, 5, 5, 7 for C = 64 ... 2048).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int | None = None,
        gamma: float = 2,
        beta: float = 1,
    ):
        super().__init__()
        check_positive_number("eca", "gamma", gamma)
        check_positive_number("eca", "beta", beta)
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels, gamma, beta)
        check_int("eca", "kernel_size", kernel_size, odd=True)
        # (b, 1, C) in, zero "same" padding, no bias: one weight per tap, shared by every channel
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    @property
    def kernel_size(self) -> int:
        return self.conv.kernel_size[0]

    def gate(self, x: Tensor) -> Tensor:
        """The (b, c, 1, 1) sigmoid gate that scales `x`."""
        descriptor = x.mean((2, 3))[:, None, :]  # (b, 1, c): channels are the 1-D sequence
        return self.conv(descriptor).sigmoid()[:, 0, :, None, None]

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)
