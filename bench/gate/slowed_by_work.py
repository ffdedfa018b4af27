"""Copies of some variants made slower by extra work, for validating the simulated instrument.

Importing this module (``bench run --plugin bench.gate.slowed_by_work``) registers
`<name>_slowed` for each name in `SLOWED`, as `bench.gate.slowed` does, but the copy does real
work instead of spinning for a time (a spin's count depends on the clock): after each forward
call it copies a share of the output's channels (`WORK_FRACTIONS`), a pass the counts see in inference and
training alike. How much slower that makes each case is measured, not assumed: the validation
reads it from the same run, the copy beside its original (`bench.gate.validate`).
"""

from __future__ import annotations

from torch import Tensor, nn

import attention_variants as av

from .known_regression import SLOWED, SUFFIX, WORK_FRACTIONS


class WithExtraWork(nn.Module):
    """Runs `inner`, then copies `fraction` of its output's channels (kept, so the copy is
    not optimised away)."""

    def __init__(self, inner: nn.Module, fraction: float):
        super().__init__()
        self.inner = inner
        self.fraction = fraction
        self.extra: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        y = self.inner(x)
        channels = max(1, round(self.fraction * y.shape[1]))
        self.extra = y.detach()[:, :channels].clone()
        return y


def _register(name: str) -> None:
    info = av.info(name)

    def factory(channels: int) -> nn.Module:
        return WithExtraWork(info.factory(channels), WORK_FRACTIONS[name])

    av.register(
        name + SUFFIX,
        replace=True,
        paper=info.paper,
        description=f"{name}, copying {WORK_FRACTIONS[name]:.0%} of its output's channels once more "
        "(simulated gate validation)",
        devices=info.devices,
        dtypes=info.dtypes,
        backward=info.backward,
    )(factory)


def register_all() -> None:
    """Register every copy (idempotent: a second call replaces them)."""
    for name in SLOWED:
        _register(name)


register_all()  # importing the module as a plugin is what registers them
