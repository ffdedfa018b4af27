"""Bytes each Triton kernel loads from and stores to global memory, counted under Triton's
interpreter (TRITON_INTERPRET=1, set before triton is imported), not derived from a formula.

Every masked load and store the interpreter executes is seen with its addresses and mask: the
bytes of the lanes that are on, attributed to the kernel argument whose tensor holds each
address. What a GPU's caches then do with those accesses is not modelled: these are the
requests a kernel makes, which is what a pass over a tensor costs at the least.

    with count_traffic() as log:
        av.create("eca_fused", 64).triton_gate(x)  # on CPU tensors, kernels interpreted
    log.launches[0].loaded["x_ptr"]                # bytes read from x by the first kernel

`first_sample_only=True` runs only the programs of the first sample (grid axis 0, which every
fused kernel gives to the sample) and multiplies their bytes by the batch size: the same count,
B times faster, with the block sizes chosen for the whole batch (a test checks it against the
full grid).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OTHER = "<other>"  # an address in none of the kernel's tensor arguments


@dataclass
class KernelLaunch:
    """One launch: its kernel, grid, constexpr values and bytes per argument."""

    kernel: str
    grid: tuple[int, ...] = ()
    constants: dict[str, object] = field(default_factory=dict)
    loaded: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    stored: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _ranges: list[tuple[str, int, int]] = field(default_factory=list, repr=False)

    def _attribute(self, addresses: np.ndarray, element_bytes: int, into: dict[str, int]):
        left = np.ones(addresses.shape, dtype=bool)
        for name, low, high in self._ranges:
            inside = left & (addresses >= low) & (addresses < high)
            if inside.any():
                into[name] += int(inside.sum()) * element_bytes
                left &= ~inside
        if left.any():
            into[OTHER] += int(left.sum()) * element_bytes

    @property
    def total_bytes(self) -> int:
        return sum(self.loaded.values()) + sum(self.stored.values())


@dataclass
class TrafficLog:
    launches: list[KernelLaunch] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(launch.total_bytes for launch in self.launches)

    def kernels(self) -> list[str]:
        return [launch.kernel for launch in self.launches]


def _require_interpreter():
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            "kernel traffic is counted under Triton's interpreter: set TRITON_INTERPRET=1 "
            "before triton is imported (e.g. TRITON_INTERPRET=1 python ...)"
        )
    from triton.runtime import interpreter

    return interpreter


@contextmanager
def count_traffic(first_sample_only: bool = False) -> Iterator[TrafficLog]:
    """Record every interpreted kernel launch in the block, with its global-memory bytes."""
    interpreter = _require_interpreter()
    log = TrafficLog()
    executor, builder = interpreter.GridExecutor, interpreter.InterpreterBuilder
    original_call, original_init_args = executor.__call__, executor._init_args_hst
    original_load, original_store = builder.create_masked_load, builder.create_masked_store

    def call(self, *args, **kwargs):
        launch = KernelLaunch(self.fn.__name__)
        log.launches.append(launch)
        if not first_sample_only:
            return original_call(self, *args, **kwargs)
        grid = self.grid
        self.grid = (1, *grid[1:])
        try:
            result = original_call(self, *args, **kwargs)
        finally:
            self.grid = grid
        for counts in (launch.loaded, launch.stored):
            for name in counts:
                counts[name] *= grid[0]
        launch.grid = grid
        return result

    def init_args(self, args_dev, kwargs):
        args_hst, kwargs_hst = original_init_args(self, args_dev, kwargs)
        launch = log.launches[-1]
        named = dict(zip(self.arg_names, args_hst, strict=False)) | kwargs_hst
        for name, value in named.items():
            if hasattr(value, "data_ptr"):
                low = value.data_ptr()
                launch._ranges.append((name, low, low + value.numel() * value.element_size()))
            elif name in self.constexprs:
                launch.constants[name] = value
        launch.grid = tuple(self.grid)
        return args_hst, kwargs_hst

    def element_bytes(ptrs) -> int:
        return max(ptrs.get_element_ty().primitive_bitwidth // 8, 1)

    def load(self, ptrs, mask, other, cache_policy, is_volatile):
        log.launches[-1]._attribute(
            ptrs.data[mask.data.astype(bool)], element_bytes(ptrs), log.launches[-1].loaded
        )
        return original_load(self, ptrs, mask, other, cache_policy, is_volatile)

    def store(self, ptrs, value, mask, cache_policy):
        log.launches[-1]._attribute(
            ptrs.data[mask.data.astype(bool)], element_bytes(ptrs), log.launches[-1].stored
        )
        return original_store(self, ptrs, value, mask, cache_policy)

    executor.__call__, executor._init_args_hst = call, init_args
    builder.create_masked_load, builder.create_masked_store = load, store
    try:
        yield log
    finally:
        executor.__call__, executor._init_args_hst = original_call, original_init_args
        builder.create_masked_load, builder.create_masked_store = original_load, original_store


# ---- a block's kernels at a case's shape ------------------------------------------------------


def count_block(
    name: str,
    shape: tuple[int, int, int, int],
    memory_format: str = "contiguous",
    dtype: str = "float32",
    mode: str = "infer",
    options: dict[str, object] | None = None,
) -> dict[str, object]:
    """The Triton kernels' bytes for one call of the fused block `name` (forward, or forward
    and backward for mode "train"), with `feature_map_bytes` (one pass over x) to read them by;
    counted for the first sample and multiplied by the batch."""
    import torch

    import attention_variants as av

    _require_interpreter()
    module = av.create(name, shape[1], **(options or {})).to(getattr(torch, dtype))
    if not hasattr(module, "triton_gate"):
        raise ValueError(f"{name}: not a fused block with Triton kernels")
    fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    x = torch.randn(shape, dtype=getattr(torch, dtype)).contiguous(memory_format=fmt)
    x.requires_grad_(mode == "train")
    with count_traffic(first_sample_only=True) as log:
        y = module.triton_gate(x)[0]
        if mode == "train":
            y.backward(torch.ones_like(y))
    loaded = sum(sum(launch.loaded.values()) for launch in log.launches)
    stored = sum(sum(launch.stored.values()) for launch in log.launches)
    return {
        "kernels": " ".join(log.kernels()),
        "loaded_bytes": loaded,
        "stored_bytes": stored,
        "feature_map_bytes": x.numel() * x.element_size(),
    }


def source_digest() -> str:
    """What the counts depend on: the kernels' and their ops' source."""
    import hashlib

    from attention_variants.fused import ops, triton_kernels

    sources = b"".join(Path(m.__file__).read_bytes() for m in (triton_kernels, ops))
    return hashlib.sha256(sources).hexdigest()[:16]
