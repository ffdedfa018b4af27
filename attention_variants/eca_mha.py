"""ECA followed by multi-head self-attention over spatial positions (the seed idea, made to work).

The blog post that proposed "ECA + multi-head attention" shipped code that cannot run. Each of
its bugs, and how this module resolves it:

1. The ECA 1-D convolution was fed a (b, c, 1) tensor, so Conv1d(1, 1, k) saw c input channels.
   Here the pooled descriptor is (b, 1, c): one input channel, the c channels as the sequence.
2. Attention was built with embedding size C but applied to a tensor whose last dimension is
   H*W. Here the feature map is read as H*W tokens of C features: (b, H*W, C).
3. The attended output stayed 3-D. Here it is reshaped back to (b, c, h, w).
4. ECA's gamma and b were used to rescale the output. Here they only choose the kernel size,
   k = |log2(C)/gamma + b/gamma| rounded to odd, as in ECA-Net.
"""

import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_choice, check_int
from .eca import ECA, ECA_OPTION_HELP
from .registry import register


def naive_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(Q K^T / sqrt(d)) V spelled out: materialises the (N, N) score matrix."""
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return scores.softmax(dim=-1) @ v


ATTENTION_IMPLS = {"sdpa": F.scaled_dot_product_attention, "naive": naive_attention}


@register(
    "eca_mha",
    paper="ECA (Wang et al., CVPR 2020) + multi-head self-attention (Vaswani et al., 2017)",
    option_help={
        "heads": "attention heads; must divide C",
        "attention_impl": "sdpa (torch's scaled_dot_product_attention) or naive (softmax(QK^T)V "
        "written out, its N x N scores in memory)",
        "qkv_bias": "a bias in the Q, K, V projection",
        **ECA_OPTION_HELP,
    },
)
class ECAMultiHeadAttention(nn.Module):
    """ECA gate, then residual multi-head self-attention over the H*W positions (C-dim tokens)."""

    def __init__(
        self,
        channels: int,
        heads: int = 4,
        attention_impl: str = "sdpa",
        kernel_size: int | None = None,
        gamma: float = 2,
        beta: float = 1,
        qkv_bias: bool = True,
    ):
        super().__init__()
        check_int("eca_mha", "heads", heads, maximum=channels, maximum_reason="channels")
        if channels % heads:
            divisors = [h for h in range(1, min(channels, 64) + 1) if channels % h == 0]
            raise ValueError(
                f"eca_mha: heads={heads} does not divide channels={channels}; "
                f"allowed: a divisor of {channels}, e.g. {divisors}"
            )
        check_choice("eca_mha", "attention_impl", attention_impl, ATTENTION_IMPLS)
        check_choice("eca_mha", "qkv_bias", qkv_bias, (True, False))
        self.heads = heads
        self.attention_impl = attention_impl
        self.eca = ECA(channels, kernel_size, gamma, beta)
        self.qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = self.eca(x).flatten(2).transpose(1, 2)  # (b, h*w, c)
        q, k, v = (
            self.qkv(tokens).view(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        )
        attended = ATTENTION_IMPLS[self.attention_impl](q, k, v)  # (b, heads, h*w, c/heads)
        tokens = tokens + self.proj(attended.transpose(1, 2).reshape(b, h * w, c))
        # (b, h*w, c) -> (b, c, h, w) is a view: channels_last in memory, shape (b, c, h, w)
        return tokens.transpose(1, 2).reshape(b, c, h, w)
