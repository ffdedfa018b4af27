"""Peak memory of one call, above what existed before it, on any device.

CUDA: the caching allocator's own peak after a reset. Every device (the CPU included, where
PyTorch keeps no allocator peak and process RSS cannot be reset): a dispatch-level tracker that
adds each tensor storage an op creates and subtracts it when the storage is freed. The tracker
sees what ops return (activations, saved tensors, gradients), not scratch space that a kernel
allocates and frees inside itself.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .counting import as_grad_inputs


class LiveStorageTracker(TorchDispatchMode):
    """Tracks bytes of the storages created while active; `peak_bytes` is the high-water mark."""

    def __init__(self):
        super().__init__()
        self.live_bytes = 0
        self.peak_bytes = 0
        self._tracked: set[int] = set()  # ids of storages this tracker counts and that are alive

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {
            id(t.untyped_storage())
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor) and _has_storage(t)
        }
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and _has_storage(t):
                self._add(t.untyped_storage(), inputs)
        return out

    def _add(self, storage: torch.UntypedStorage, input_storages: set[int]) -> None:
        key = id(storage)
        # a view or in-place result shares an input's storage: nothing new was allocated
        if key in self._tracked or key in input_storages:
            return
        nbytes = storage.nbytes()
        self._tracked.add(key)
        self.live_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        weakref.finalize(storage, self._free, key, nbytes)

    def _free(self, key: int, nbytes: int) -> None:
        self._tracked.discard(key)
        self.live_bytes -= nbytes


def _has_storage(t: torch.Tensor) -> bool:
    return t.layout == torch.strided and t.device.type != "meta"


def _run(module_or_fn: nn.Module | Callable[..., Any], inputs: tuple, backward: bool) -> None:
    if not backward:
        with torch.no_grad():
            module_or_fn(*inputs)
        return
    out = module_or_fn(*inputs)
    outputs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor) and o.requires_grad]
    if not outputs:
        raise ValueError("backward=True, but no output requires grad: nothing to differentiate")
    torch.autograd.backward(outputs, [torch.ones_like(o) for o in outputs])


def tracked_peak_memory(
    module_or_fn: nn.Module | Callable[..., Any], *inputs: Any, backward: bool = False
) -> int:
    """Peak bytes of tensor storages alive during the call that did not exist before it."""
    if backward:
        inputs = tuple(as_grad_inputs(inputs))
    tracker = LiveStorageTracker()
    with tracker:
        _run(module_or_fn, inputs, backward)
    return tracker.peak_bytes


def allocator_peak_memory(
    module_or_fn: nn.Module | Callable[..., Any], *inputs: Any, backward: bool = False, device=None
) -> int:
    """CUDA: the caching allocator's peak during the call, minus what was allocated before."""
    if backward:
        inputs = tuple(as_grad_inputs(inputs))
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    _run(module_or_fn, inputs, backward)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def _device_of(module_or_fn: Any, inputs: tuple) -> torch.device:
    for t in inputs:
        if isinstance(t, torch.Tensor):
            return t.device
    if isinstance(module_or_fn, nn.Module):
        for p in module_or_fn.parameters():
            return p.device
    return torch.device("cpu")


def peak_memory(
    module_or_fn: nn.Module | Callable[..., Any], *inputs: Any, backward: bool = False
) -> int:
    """Peak bytes allocated during one call (and its backward), above what existed before.

    On CUDA the allocator's peak; elsewhere the live-storage tracker. In training mode
    (``backward=True``) the activations saved for backward and the gradients show up.
    """
    device = _device_of(module_or_fn, inputs)
    if device.type == "cuda":
        return allocator_peak_memory(module_or_fn, *inputs, backward=backward, device=device)
    return tracked_peak_memory(module_or_fn, *inputs, backward=backward)


def self_check() -> list[dict[str, Any]]:
    """On CUDA: the live-storage tracker against the caching allocator, per variant and mode
    (``python -m bench check memory`` prints it); a RuntimeError without a CUDA device."""
    import attention_variants as av

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device: the tracker/allocator comparison needs one")
    torch.manual_seed(0)
    rows = []
    for name, options in (
        ("se", {}),
        ("cbam", {}),
        ("eca", {}),
        ("eca_mha", {}),
        ("eca_mha", {"attention_impl": "naive"}),
    ):
        module = av.create(name, 64, **options).cuda()
        x = torch.randn(8, 64, 32, 32, device="cuda")
        for backward in (False, True):
            tracked = tracked_peak_memory(module, x, backward=backward)
            allocator = allocator_peak_memory(module, x, backward=backward)
            rows.append({
                "case": f"{name} {options or ''}".strip(), "mode": "train" if backward else "infer",
                "tracker_bytes": tracked, "allocator_bytes": allocator,
                "ratio": tracked / allocator if allocator else float("nan"),
            })  # fmt: skip
    return rows
