"""The fused gates as PyTorch custom ops, with autograd and fake (meta) implementations.

Being custom ops, they are traced whole by torch.compile and seen by name at the dispatcher
(``attention_variants.eca_gate``, ...), where bench.measurement.counting scores them with a formula.
Each forward returns (y, pooled, gate): pooled and gate are (B, C) float32, kept for backward.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def backend(device: torch.device) -> ModuleType:
    """The kernels for `device`: the C++ extension on CPUs, Triton on CUDA."""
    if device.type == "cpu":
        from .cpu import extension

        return extension()
    if device.type == "cuda":
        if not triton_available():
            raise RuntimeError(
                "the fused attention variants need triton on CUDA devices: pip install triton "
                "(or use the eager variants, e.g. 'eca' instead of 'eca_fused')"
            )
        from . import triton_kernels

        return triton_kernels
    raise RuntimeError(f"the fused attention variants run on cpu and cuda, not {device.type}")


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


def _gate_outputs(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    b, c = x.shape[:2]
    stats = x.new_empty((b, c), dtype=torch.float32)
    return torch.empty_like(x), stats, torch.empty_like(stats)


# ---- the two-pass backward shared by every gate --------------------------------------------------


@torch.library.custom_op("attention_variants::channel_dot", mutates_args=())
def channel_dot(dy: Tensor, x: Tensor) -> Tensor:
    """sum over H*W of dy * x, per (b, c), in float32."""
    x = _standard_layout(x)
    return backend(x.device).channel_dot(_like_x(dy, x), x)


@channel_dot.register_fake
def _(dy, x):
    return x.new_empty(x.shape[:2], dtype=torch.float32)


@torch.library.custom_op("attention_variants::gate_input_grad", mutates_args=())
def gate_input_grad(dy: Tensor, gate: Tensor, dpooled: Tensor) -> Tensor:
    """dx = dy * gate + dpooled / (H*W): the input gradient of x * gate(mean(x))."""
    dy = _standard_layout(dy)
    return backend(dy.device).gate_input_grad(
        dy, gate.float().contiguous(), dpooled.float().contiguous()
    )


@gate_input_grad.register_fake
def _(dy, gate, dpooled):
    return torch.empty_like(dy)


def _sigmoid_grad(dgate: Tensor, gate: Tensor) -> Tensor:
    return dgate * gate * (1 - gate)


# ---- ECA -------------------------------------------------------------------------------------


@torch.library.custom_op("attention_variants::eca_gate", mutates_args=())
def eca_gate(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ECA fused: y = x * sigmoid(conv1d(mean_hw(x))), with pooled and gate for backward."""
    x = _standard_layout(x)
    y, pooled, gate = backend(x.device).eca_forward(x, weight.detach())
    return y, pooled, gate


@eca_gate.register_fake
def _(x, weight):
    return _gate_outputs(x)


def _eca_setup(ctx, inputs, output):
    x, weight = inputs
    _, pooled, gate = output
    ctx.save_for_backward(x, weight, pooled, gate)


def _eca_backward(ctx, dy, dpooled_out, dgate_out):
    x, weight, pooled, gate = ctx.saved_tensors
    x = _standard_layout(x)
    dy = _like_x(dy, x)
    kernels = backend(x.device)
    if hasattr(kernels, "eca_backward"):  # the CPU library: one call, no Python in between
        return kernels.eca_backward(dy, x, weight, pooled, gate, dgate_out, dpooled_out)
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


@torch.library.custom_op("attention_variants::se_gate", mutates_args=())
def se_gate(
    x: Tensor, w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """SE fused: y = x * sigmoid(W2 relu(W1 mean_hw(x) + b1) + b2), with pooled and gate."""
    x = _standard_layout(x)
    detach = lambda t: None if t is None else t.detach()  # noqa: E731
    y, pooled, gate = backend(x.device).se_forward(
        x, w1.detach(), detach(b1), w2.detach(), detach(b2)
    )
    return y, pooled, gate


@se_gate.register_fake
def _(x, w1, b1, w2, b2):
    return _gate_outputs(x)


def _se_setup(ctx, inputs, output):
    x, w1, b1, w2, b2 = inputs
    _, pooled, gate = output
    ctx.has_bias = (b1 is not None, b2 is not None)
    ctx.save_for_backward(x, w1, b1, w2, b2, pooled, gate)


def _se_backward(ctx, dy, dpooled_out, dgate_out):
    x, w1, b1, w2, b2, pooled, gate = ctx.saved_tensors
    x = _standard_layout(x)
    dy = _like_x(dy, x)
    kernels = backend(x.device)
    if hasattr(kernels, "se_backward"):  # the CPU library: one call, no Python in between
        return kernels.se_backward(dy, x, w1, b1, w2, b2, pooled, gate, dgate_out, dpooled_out)
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
