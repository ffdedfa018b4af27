"""The CPU kernels: a C++/OpenMP extension compiled on first use (then cached by torch)."""

from __future__ import annotations

import functools
from pathlib import Path

SOURCE = Path(__file__).parent / "csrc" / "channel_gate_cpu.cpp"


@functools.cache
def extension():
    """Build (first call only; torch caches the build) and import the CPU extension."""
    from torch.utils import cpp_extension

    try:
        return cpp_extension.load(
            name="attention_variants_channel_gate_cpu",
            sources=[str(SOURCE)],
            extra_cflags=["-O3", "-march=native", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as error:  # no compiler, no ninja, a broken toolchain
        raise RuntimeError(
            "the fused CPU kernels are compiled on first use and that failed: "
            f"{type(error).__name__}: {error}. They need a C++ compiler with OpenMP and ninja "
            "(pip install ninja)."
        ) from error
