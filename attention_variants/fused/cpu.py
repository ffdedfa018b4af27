"""The CPU kernels: a C++/OpenMP library compiled on first use (then cached by torch).

It registers its functions as torch ops, `torch.ops.attention_variants_cpu.*`: the whole blocks
`eca_gate` and `se_gate` with their autograd (no Python between the dispatcher and the kernel,
forward or backward), and the pieces they are made of.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import torch

SOURCE = Path(__file__).parent / "csrc" / "channel_gate_cpu.cpp"
_loaded = False  # a plain flag, not a cache: torch.compile reads it as a constant once loaded
# the instruction set the kernels are compiled for: this CPU's, unless a tool that cannot run
# all of it (valgrind: no AVX-512) names another, e.g. x86-64-v3
ARCH_VARIABLE = "ATTENTION_VARIANTS_CPU_ARCH"


def target_arch() -> str:
    return os.environ.get(ARCH_VARIABLE) or "native"


def extension():
    """The CPU kernels' op namespace; the first call builds (torch caches the build) and loads."""
    if not _loaded:
        _load()
    return torch.ops.attention_variants_cpu


def build_name() -> str:
    """The build's name, with the source's hash (and a target other than this CPU) in it: two
    checkouts of different sources (as `bench ab` sweeps in turns) keep a build each instead of
    rebuilding at every switch."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    arch = target_arch()
    suffix = "" if arch == "native" else "_" + arch.replace("-", "_")
    return f"attention_variants_channel_gate_cpu_{digest}{suffix}"


def _build_source(name: str) -> Path:
    """The source copied into the build's own folder: ninja records the command with the
    source's path in it, so compiling from a checkout's path would rebuild whenever another
    checkout run by the same Python (a worktree of `bench ab`) last built the same source."""
    from torch.utils.cpp_extension import _get_build_directory

    copy = Path(_get_build_directory(name, verbose=False)) / SOURCE.name
    if not copy.exists() or copy.read_bytes() != SOURCE.read_bytes():
        shutil.copyfile(SOURCE, copy)
    return copy


def _load() -> None:
    global _loaded
    from torch.utils import cpp_extension

    try:
        name = build_name()
        cpp_extension.load(
            name=name,
            sources=[str(_build_source(name))],
            extra_cflags=["-O3", f"-march={target_arch()}", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
            verbose=False,
        )
        _register_fakes()
        _loaded = True
    except Exception as error:  # no compiler, no ninja, a broken toolchain
        raise RuntimeError(
            "the fused CPU kernels are compiled on first use and that failed: "
            f"{type(error).__name__}: {error}. They need a C++ compiler with OpenMP and ninja "
            "(pip install ninja)."
        ) from error


def _register_fakes() -> None:
    """Shapes of the ops, so torch.compile can trace the blocks, forward and backward."""

    def gates(x):
        stats = x.new_empty(x.shape[:2], dtype=torch.float32)
        return torch.empty_like(x), stats, torch.empty_like(stats)

    @torch.library.register_fake("attention_variants_cpu::eca_gate")
    def _(x, weight):
        return gates(x)

    @torch.library.register_fake("attention_variants_cpu::se_gate")
    def _(x, w1, b1, w2, b2):
        return gates(x)

    @torch.library.register_fake("attention_variants_cpu::eca_backward")
    def _(dy, x, weight, pooled, gate, dgate_extra, dpooled_extra):
        return torch.empty_like(dy), torch.empty_like(weight)

    @torch.library.register_fake("attention_variants_cpu::se_backward")
    def _(dy, x, w1, b1, w2, b2, pooled, gate, dgate_extra, dpooled_extra):
        like = lambda t: None if t is None else torch.empty_like(t)  # noqa: E731
        return torch.empty_like(dy), like(w1), like(b1), like(w2), like(b2)
