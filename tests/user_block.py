"""A user's plugin block as its own file would hold it: a channel gate, with `extra_passes`
elementwise passes over its output (deterministic extra work, not a sleep)."""

BLOCK = """import torch
from torch import nn

import attention_variants as av


@av.register("{name}", paper="a user's channel gate")
class UserGate(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        y = x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))
{extra}        return y
"""


def block_source(name: str, extra_passes: int = 0) -> str:
    """The plugin file's text, registering the block as `name`."""
    extra = "".join("        y = y * 1.0001\n" for _ in range(extra_passes))
    return BLOCK.format(name=name, extra=extra)
