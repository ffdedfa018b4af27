"""The fused gates on CUDA as PyTorch ops backed by Triton kernels, with autograd.

Each is a `torch.library.triton_op`: in eager mode it calls its kernels directly (no autotuner,
no higher-order-op dispatch: see `triton_kernels`), torch.compile traces into the kernels, and
the dispatcher sees it by name (``attention_variants.eca_gate``, ...), where
bench.measurement.counting scores it with a formula. Each forward returns (y, pooled, gate):
pooled and gate are (B, C) float32, kept for backward.

The CPU blocks do not go through these ops: they call the C++ library (`cpu.py`). CPU tensors
run these ops only under TRITON_INTERPRET=1, which is how the tests check them without a GPU.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"  # read by triton once, at import
# Compiled Triton kernels can be traced into (torch.compile sees them); interpreted ones cannot,
# and without triton (CPU-only use) the ops only explain themselves when called
TRACEABLE_KERNELS = triton_available() and not INTERPRETED
_kernels: ModuleType | None = None  # imported on the first call: every later one reads this


def backend(device: torch.device) -> ModuleType:
    """The Triton kernels, on CUDA (or on CPU tensors under TRITON_INTERPRET=1)."""
    if device.type not in ("cuda", "meta") and not (device.type == "cpu" and INTERPRETED):
        raise RuntimeError(
            f"the Triton-backed fused ops run on cuda tensors, not {device.type} (on CPUs the "
            "fused blocks call the C++ library, attention_variants_cpu; Triton's interpreter "
            "runs these ops on CPU tensors when TRITON_INTERPRET=1)"
        )
    global _kernels
    if _kernels is None:
        if not triton_available():
            raise RuntimeError(
                "the fused attention variants need triton on CUDA devices: pip install triton "
                "(or use the eager variants, e.g. 'eca' instead of 'eca_fused')"
            )
        from . import triton_kernels

        _kernels = triton_kernels
    return _kernels


def _gate_op(name: str, fake):
    """A `torch.library.triton_op` (in eager mode it launches its kernels without Triton's
    higher-order-op dispatch; traced, torch.compile sees the kernels), or, where the kernels
    are not traceable, an opaque custom op with `fake` for its shapes."""

    def define(fn):
        if TRACEABLE_KERNELS:
            return torch.library.triton_op(name, fn, mutates_args=())
        op = torch.library.custom_op(name, fn, mutates_args=())
        op.register_fake(fake)
        return op

    return define


def _gate_outputs(x: Tensor, *_) -> tuple[Tensor, Tensor, Tensor]:
    b, c = x.shape[:2]
    stats = x.new_empty((b, c), dtype=torch.float32)
    return torch.empty_like(x), stats, torch.empty_like(stats)


def _like_x(t: Tensor, x: Tensor) -> Tensor:
    """`t` in x's memory layout: the kernels index both tensors with x's strides."""
    fmt = (
        torch.channels_last
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        else torch.contiguous_format
    )
    return t.contiguous(memory_format=fmt)


def _standard_layout(x: Tensor) -> Tensor:
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.contiguous()


def _vector(t: Tensor | None) -> Tensor | None:
    """A parameter as the kernels read it: float32, contiguous."""
    return None if t is None else t.detach().float().contiguous()


# ---- the two-pass backward shared by every gate --------------------------------------------------


@_gate_op(
    "attention_variants::channel_dot",
    lambda dy, x: x.new_empty(x.shape[:2], dtype=torch.float32),
)
def channel_dot(dy: Tensor, x: Tensor) -> Tensor:
    """sum over H*W of dy * x, per (b, c), in float32."""
    x = _standard_layout(x)
    return backend(x.device).channel_dot(_like_x(dy, x), x)


@_gate_op("attention_variants::gate_input_grad", lambda dy, gate, dpooled: torch.empty_like(dy))
def gate_input_grad(dy: Tensor, gate: Tensor, dpooled: Tensor) -> Tensor:
    """dx = dy * gate + dpooled / (H*W): the input gradient of x * gate(mean(x))."""
    dy = _standard_layout(dy)
    return backend(dy.device).gate_input_grad(dy, _vector(gate), _vector(dpooled))


def _sigmoid_grad(dgate: Tensor, gate: Tensor) -> Tensor:
    return dgate * gate * (1 - gate)


# ---- ECA -------------------------------------------------------------------------------------


@_gate_op("attention_variants::eca_gate", _gate_outputs)
def eca_gate(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ECA fused: y = x * sigmoid(conv1d(mean_hw(x))), with pooled and gate for backward."""
    x = _standard_layout(x)
    y, pooled, gate = backend(x.device).eca_forward(x, _vector(weight.reshape(-1)))
    return y, pooled, gate


def _eca_setup(ctx, inputs, output):
    x, weight = inputs
    _, pooled, gate = output
    ctx.save_for_backward(x, weight, pooled, gate)


def _eca_backward(ctx, dy, dpooled_out, dgate_out):
    x, weight, pooled, gate = ctx.saved_tensors
    x = _standard_layout(x)
    dy = _like_x(dy, x)
    dgate = channel_dot(dy, x)
    if dgate_out is not None:
        dgate = dgate + dgate_out
    dz = _sigmoid_grad(dgate, gate)
    w = weight.detach().float().reshape(-1)
    half = w.numel() // 2
    # z[c] = sum_j w[j] pooled[c + j - half]; on (B, C) vectors, windows beat a tiny conv call
    dpooled = F.pad(dz, (half, half)).unfold(1, w.numel(), 1) @ w.flip(0)
    if dpooled_out is not None:
        dpooled = dpooled + dpooled_out
    dweight = torch.einsum("bc,bck->k", dz, F.pad(pooled, (half, half)).unfold(1, w.numel(), 1))
    dx = gate_input_grad(dy, gate, dpooled)
    return dx, dweight.reshape(weight.shape).to(weight.dtype)


eca_gate.register_autograd(_eca_backward, setup_context=_eca_setup)


# ---- SE --------------------------------------------------------------------------------------


@_gate_op("attention_variants::se_gate", _gate_outputs)
def se_gate(
    x: Tensor, w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """SE fused: y = x * sigmoid(W2 relu(W1 mean_hw(x) + b1) + b2), with pooled and gate."""
    x = _standard_layout(x)
    y, pooled, gate = backend(x.device).se_forward(
        x, _vector(w1), _vector(b1), _vector(w2), _vector(b2)
    )
    return y, pooled, gate


def _se_setup(ctx, inputs, output):
    x, w1, b1, w2, b2 = inputs
    _, pooled, gate = output
    ctx.has_bias = (b1 is not None, b2 is not None)
    ctx.save_for_backward(x, w1, b1, w2, b2, pooled, gate)


def _se_backward(ctx, dy, dpooled_out, dgate_out):
    x, w1, b1, w2, b2, pooled, gate = ctx.saved_tensors
    x = _standard_layout(x)
    dy = _like_x(dy, x)
    dgate = channel_dot(dy, x)
    if dgate_out is not None:
        dgate = dgate + dgate_out
    dz = _sigmoid_grad(dgate, gate)
    w1f, w2f = w1.detach().float(), w2.detach().float()
    hidden = F.linear(pooled, w1f, None if b1 is None else b1.detach().float())
    active = hidden > 0
    hidden = hidden.clamp_min(0)
    # the MLP's backward on (B, C) tensors: tiny next to the feature-map passes
    dw2, dhidden = dz.t() @ hidden, (dz @ w2f) * active
    dw1, dpooled = dhidden.t() @ pooled, dhidden @ w1f
    if dpooled_out is not None:
        dpooled = dpooled + dpooled_out
    dx = gate_input_grad(dy, gate, dpooled)
    db1 = dhidden.sum(0).to(b1.dtype) if ctx.has_bias[0] else None
    db2 = dz.sum(0).to(b2.dtype) if ctx.has_bias[1] else None
    return dx, dw1.to(w1.dtype), db1, dw2.to(w2.dtype), db2


se_gate.register_autograd(_se_backward, setup_context=_se_setup)
