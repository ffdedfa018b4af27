"""Global context block (Cao et al., GCNet, ICCVW 2019, arXiv:1904.11492)."""

import torch
from torch import Tensor, nn

from .checks import check_choice
from .registry import register


@register(
    "gc",
    paper="Cao et al., GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond, "
    "ICCVW 2019",
    option_help={
        "ratio": "bottleneck width int(C * ratio)",
        "pooling": "att (softmax-weighted sum over positions) or avg (mean)",
        "fusion": "add (context added to every position) or mul (a sigmoid gate)",
    },
)
class GlobalContext(nn.Module):
    """GC block: softmax-weighted global pooling (`att`) or mean (`avg`), a 1x1 conv bottleneck
    with LayerNorm and ReLU, added to every position (`add`) or as a sigmoid gate (`mul`)."""

    def __init__(
        self, channels: int, ratio: float = 1 / 16, pooling: str = "att", fusion: str = "add"
    ):
        super().__init__()
        hidden = int(channels * ratio) if isinstance(ratio, (int, float)) else 0
        if isinstance(ratio, bool) or not 0 < ratio <= 1 or hidden < 1:
            raise ValueError(
                f"gc: ratio={ratio!r} is invalid; allowed: a number in (0, 1] with "
                f"int(channels * ratio) >= 1 (channels={channels})"
            )
        self.pooling = check_choice("gc", "pooling", pooling, ("att", "avg"))
        self.fusion = check_choice("gc", "fusion", fusion, ("add", "mul"))
        if pooling == "att":
            self.conv_mask = nn.Conv2d(channels, 1, 1)
            # xvjiarui/GCNet: kaiming_init(conv_mask, mode='fan_in'), bias 0
            nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.conv_mask.bias)
        self.transform = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.LayerNorm([hidden, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )
        # the transform's last conv starts at zero: the block starts as the identity
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    def context(self, x: Tensor) -> Tensor:
        """The (b, c, 1, 1) global context of `x`."""
        if self.pooling == "avg":
            return x.mean((2, 3), keepdim=True)
        b, c = x.shape[:2]
        weights = self.conv_mask(x).flatten(2).softmax(-1)  # (b, 1, HW): one map per sample
        return torch.matmul(x.flatten(2), weights.transpose(1, 2)).view(b, c, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        term = self.transform(self.context(x))
        return x + term if self.fusion == "add" else x * term.sigmoid()
