"""Slowed copies of some variants, for `bench.gate.validate`: a known regression to detect.

Importing this module (``bench run --plugin bench.gate.slowed``) registers `<name>_slowed` for
each name in `SLOWED`: the same block, which after each forward call spins for `FRACTION` of
the time that call took, so it is slower by exactly that fraction whatever the machine does.
Only inference is slowed that way (a backward pass is not), so the copies offer no backward.
"""

from __future__ import annotations

import time

from torch import Tensor, nn

import attention_variants as av

from .known_regression import FRACTION, SLOWED, SUFFIX


class SlowedBy(nn.Module):
    """Runs `inner`, then spins for `fraction` of the time that call took."""

    def __init__(self, inner: nn.Module, fraction: float):
        super().__init__()
        self.inner = inner
        self.fraction = fraction

    def forward(self, x: Tensor) -> Tensor:
        start = time.perf_counter()
        y = self.inner(x)
        until = start + (1 + self.fraction) * (time.perf_counter() - start)
        while time.perf_counter() < until:
            pass
        return y


def _register(name: str) -> None:
    info = av.info(name)

    def factory(channels: int) -> nn.Module:
        return SlowedBy(info.factory(channels), FRACTION)

    av.register(
        name + SUFFIX,
        replace=True,
        paper=info.paper,
        description=f"{name}, {FRACTION:.0%} slower (gate validation)",
        devices=info.devices,
        dtypes=info.dtypes,
        backward=False,
    )(factory)


def register_all() -> None:
    """Register every slowed copy (idempotent: a second call replaces them)."""
    for name in SLOWED:
        _register(name)


register_all()  # importing the module as a plugin is what registers them
