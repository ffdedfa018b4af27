"""SimAM, a parameter-free attention (Yang et al., ICML 2021)."""

from torch import Tensor, nn

from .checks import check_positive_number
from .registry import register


@register(
    "simam",
    paper="Yang et al., SimAM: A Simple, Parameter-Free Attention Module, ICML 2021",
    option_help={"e_lambda": "the energy's regulariser (the paper's lambda, 1e-4)"},
)
class SimAM(nn.Module):
    """SimAM: each activation weighted by sigmoid of its inverse energy, no parameters."""

    def __init__(self, channels: int, e_lambda: float = 1e-4):
        super().__init__()
        self.e_lambda = check_positive_number("simam", "e_lambda", e_lambda)

    def forward(self, x: Tensor) -> Tensor:
        # n = H*W - 1 as in the paper; at least 1 so that a 1x1 map stays finite
        n = max(x.shape[2] * x.shape[3] - 1, 1)
        d = (x - x.mean((2, 3), keepdim=True)).square()
        energy_inverse = d / (4 * (d.sum((2, 3), keepdim=True) / n + self.e_lambda)) + 0.5
        return x * energy_inverse.sigmoid()
