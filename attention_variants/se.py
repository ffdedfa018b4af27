"""Squeeze-and-Excitation (Hu et al., CVPR 2018, arXiv:1709.01507)."""

from torch import Tensor, nn

from .checks import check_choice, check_int
from .registry import register


class ChannelMLP(nn.Module):
    """The C -> C/r -> C bottleneck MLP shared by SE and CBAM's channel gate."""

    def __init__(self, variant: str, channels: int, reduction: int, bias: bool):
        super().__init__()
        check_int(variant, "reduction", reduction, maximum=channels, maximum_reason="channels")
        check_choice(variant, "bias", bias, (True, False))
        hidden = channels // reduction
        self.fc1 = nn.Linear(channels, hidden, bias=bias)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels, bias=bias)

    def forward(self, descriptor: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(descriptor)))


SE_OPTION_HELP = {
    "reduction": "the MLP's hidden width C // reduction (at least 1)",
    "bias": "biases in the MLP's two layers",
}


@register(
    "se", paper="Hu et al., Squeeze-and-Excitation Networks, CVPR 2018", option_help=SE_OPTION_HELP
)
class SqueezeExcite(nn.Module):
    """SE: global average pool, MLP C -> C/r -> C with ReLU, sigmoid, channel-wise scale."""

    def __init__(self, channels: int, reduction: int = 16, bias: bool = True):
        super().__init__()
        self.mlp = ChannelMLP("se", channels, reduction, bias)

    def forward(self, x: Tensor) -> Tensor:
        # mean over (H, W) rather than AdaptiveAvgPool2d: it keeps AMP and channels_last happy
        gate = self.mlp(x.mean((2, 3))).sigmoid()
        return x * gate[:, :, None, None]
