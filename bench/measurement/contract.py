"""What a measured module promises about its output, checked once before it is timed.

A block (an attention variant or a reference) returns a tensor of its input's shape, dtype
and device, finite where its input is; a network returns its declared output shape. A module
that breaks its promise would be timed doing something else than it claims, so the case fails
with `OutputContractError` instead, and the sweep goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


class OutputContractError(ValueError):
    """A module's output is not what its kind promises."""


@dataclass(frozen=True)
class OutputContract:
    """The promise: `shape` None means the input's shape (a block); a tuple, a network's."""

    name: str  # what the error names: the variant's or the network's label
    shape: tuple[int, ...] | None = None

    @classmethod
    def block(cls, name: str) -> OutputContract:
        return cls(name)

    @classmethod
    def network(cls, name: str, shape: Sequence[int]) -> OutputContract:
        return cls(name, tuple(int(s) for s in shape))

    def check(self, module: nn.Module, x: torch.Tensor) -> None:
        """One forward of `module` on `x` (no gradient, module's mode kept); raises
        `OutputContractError` naming what was wrong and what was expected."""
        with torch.no_grad():
            output = module(x)
        if not isinstance(output, torch.Tensor):
            raise OutputContractError(
                f"{self.name}: output is a {type(output).__name__}, expected a tensor"
            )
        got = tuple(output.shape)
        if self.shape is None:
            expected, whose = tuple(x.shape), "the input's"
        else:
            expected, whose = self.shape, "the declared"
        if got != expected:
            raise OutputContractError(f"{self.name}: output {got}, expected {whose} {expected}")
        if self.shape is None and output.dtype != x.dtype:
            raise OutputContractError(
                f"{self.name}: output dtype {output.dtype}, expected the input's {x.dtype}"
            )
        if output.device != x.device:
            raise OutputContractError(
                f"{self.name}: output on {output.device}, expected the input's {x.device}"
            )
        if bool(torch.isfinite(x).all()) and not bool(torch.isfinite(output).all()):
            bad = int((~torch.isfinite(output)).sum())
            raise OutputContractError(
                f"{self.name}: {bad} of {output.numel()} output values are NaN or infinite on "
                "a finite input"
            )
