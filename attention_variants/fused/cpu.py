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
        return torch.ops.attention_variants_cpu
    except Exception as error:  # no compiler, no ninja, a broken toolchain
        raise RuntimeError(
            "the fused CPU kernels are compiled on first use and that failed: "
            f"{type(error).__name__}: {error}. They need a C++ compiler with OpenMP and ninja "
            "(pip install ninja)."
        ) from error
