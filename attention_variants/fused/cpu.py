"""The CPU kernels: a C++/OpenMP library compiled on first use (then cached by torch).

It registers its functions as torch ops, `torch.ops.attention_variants_cpu.*`.
"""

from __future__ import annotations

import functools
from pathlib import Path

SOURCE = Path(__file__).parent / "csrc" / "channel_gate_cpu.cpp"


@functools.cache
def extension():
    """Build (first call only; torch caches the build) and load the CPU kernels."""
    import torch
    from torch.utils import cpp_extension

    try:
        cpp_extension.load(
            name="attention_variants_channel_gate_cpu",
            sources=[str(SOURCE)],
            extra_cflags=["-O3", "-march=native", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
            verbose=False,
        )
        _register_fakes()
        return torch.ops.attention_variants_cpu
    except Exception as error:  # no compiler, no ninja, a broken toolchain
        raise RuntimeError(
            "the fused CPU kernels are compiled on first use and that failed: "
            f"{type(error).__name__}: {error}. They need a C++ compiler with OpenMP and ninja "
            "(pip install ninja)."
        ) from error


def _register_fakes() -> None:
    """Shapes of the one-call backward ops, so torch.compile can trace the fused backward."""
    import torch

    @torch.library.register_fake("attention_variants_cpu::eca_backward")
    def _(dy, x, weight, pooled, gate, dgate_extra, dpooled_extra):
        return torch.empty_like(dy), torch.empty_like(weight)

    @torch.library.register_fake("attention_variants_cpu::se_backward")
    def _(dy, x, w1, b1, w2, b2, pooled, gate, dgate_extra, dpooled_extra):
        like = lambda t: None if t is None else torch.empty_like(t)  # noqa: E731
        return torch.empty_like(dy), like(w1), like(b1), like(w2), like(b2)
