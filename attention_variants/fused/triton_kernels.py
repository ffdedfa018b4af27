"""Triton kernels for the fused channel gates (GPUs; the CPU runs them under TRITON_INTERPRET=1).

A feature map (B, C, H, W), contiguous or channels_last, is addressed as
``b * s_b + c * s_c + hw * s_hw``; tiles are (BLOCK_C channels) x (BLOCK_HW pixels) and every sum
accumulates in float32 whatever the storage dtype.

- ECA runs as one kernel per (sample, channel block): it pools its channels plus a halo of
  k//2 channels on each side, applies the 1-D convolution and sigmoid, then scales its channels
  while they are still in L2.
- SE needs every channel's mean before any gate, so it pools (one kernel), runs its MLP (two
  matrix-vector kernels) and scales (one kernel).
- Backward: one kernel sums dy * x per channel, torch works out the gate's gradient on the tiny
  (B, C) tensors, and one kernel writes dx = dy * gate + dpooled / (H*W).

Launch: no autotuner. Each shape's block sizes come from `*_config` (a rule of the shape, cached
per shape, the same under the interpreter as on a GPU), so a call is a few kernel launches and
nothing that synchronises with the device or benchmarks: it can be captured in a CUDA graph.
Kernels are launched through `torch.library.wrap_triton`, which is a no-op in eager mode inside
a `torch.library.triton_op` and lets torch.compile see the kernels when it traces one.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
# programs a launch should have for a GPU to keep every SM busy (an H100 has 132 SMs): block
# sizes shrink until a launch has this many, where the shape allows it
TARGET_PROGRAMS = 264
MAX_ECA_KERNEL_SIZE = 2 * 8 + 1


class Config(NamedTuple):
    block_c: int
    block_hw: int
    num_warps: int


def _pow2_at_most(n: int, cap: int) -> int:
    return min(triton.next_power_of_2(max(n, 1)), cap)


def _warps(tile: int) -> int:
    return 8 if tile >= 4096 else 4


@functools.cache
def reduce_config(b: int, c: int, hw: int, channels_last: bool) -> Config:
    """Pooling and dy*x sums: one program per (sample, channel block) walks all of H*W."""
    if channels_last:  # channels are adjacent in memory: wide in C
        block_c = _pow2_at_most(c, 64)
        return Config(block_c, _pow2_at_most(hw, 2048 // block_c), 4)
    block_hw = _pow2_at_most(hw, 256)
    block_c = _pow2_at_most(c, max(2048 // block_hw, 2))
    while block_c > 2 and b * triton.cdiv(c, block_c) < TARGET_PROGRAMS:
        block_c //= 2
    return Config(block_c, block_hw, _warps(block_c * block_hw))


@functools.cache
def scale_config(b: int, c: int, hw: int, channels_last: bool) -> Config:
    """Elementwise scaling: one program per tile, tiles of about 4096 elements."""
    if channels_last:
        block_c = _pow2_at_most(c, 64)
        return Config(block_c, _pow2_at_most(hw, 4096 // block_c), 8)
    block_hw = _pow2_at_most(hw, 512)
    block_c = _pow2_at_most(c, max(4096 // block_hw, 1))
    return Config(block_c, block_hw, _warps(block_c * block_hw))


@functools.cache
def eca_config(b: int, c: int, hw: int, channels_last: bool, k: int) -> tuple[Config, int]:
    """ECA's block sizes and its window (a power of two >= BLOCK_C + 2 * (k // 2)): larger
    channel blocks re-read less of the halo (2 * (k // 2) / BLOCK_C of a pass over x), smaller
    ones give more programs; 16 keeps the halo at 1/8 of a pass for k = 3."""
    block_c = 32
    while block_c > 16 and b * triton.cdiv(c, block_c) < TARGET_PROGRAMS:
        block_c //= 2
    window = triton.next_power_of_2(block_c + 2 * (k // 2))
    block_hw = _pow2_at_most(hw, max(4096 // window, 16) if not channels_last else 64)
    return Config(block_c, block_hw, _warps(window * block_hw)), window


@functools.cache
def mlp_config(n_in: int, n_out: int) -> Config:
    """SE's matrix-vector layers: BLOCK_C output rows x BLOCK_HW inputs per step."""
    block_in = _pow2_at_most(n_in, 128)
    return Config(_pow2_at_most(n_out, 4096 // block_in), block_in, 4)


@triton.jit  # called from the kernels: compiled Triton accepts only jitted helpers
def _tile(b, c, hw, s_b, s_c, s_hw):
    return b * s_b + c[:, None] * s_c + hw[None, :] * s_hw


@triton.jit
def _pool_kernel(
    x_ptr, pooled_ptr, C, HW, s_b, s_c, s_hw, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr
):
    b = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    acc = tl.zeros([BLOCK_C], dtype=tl.float32)
    for start in range(0, HW, BLOCK_HW):
        hw = start + tl.arange(0, BLOCK_HW)
        mask = (c[:, None] < C) & (hw[None, :] < HW)
        tile = tl.load(x_ptr + _tile(b, c, hw, s_b, s_c, s_hw), mask=mask, other=0.0)
        acc += tl.sum(tile.to(tl.float32), axis=1)
    tl.store(pooled_ptr + b * C + c, acc / HW, mask=c < C)


@triton.jit
def _channel_dot_kernel(
    dy_ptr, x_ptr, out_ptr, C, HW, s_b, s_c, s_hw, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr
):
    b = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    acc = tl.zeros([BLOCK_C], dtype=tl.float32)
    for start in range(0, HW, BLOCK_HW):
        hw = start + tl.arange(0, BLOCK_HW)
        mask = (c[:, None] < C) & (hw[None, :] < HW)
        offsets = _tile(b, c, hw, s_b, s_c, s_hw)
        dy = tl.load(dy_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        acc += tl.sum(dy * x, axis=1)
    tl.store(out_ptr + b * C + c, acc, mask=c < C)


@triton.jit
def _scale_kernel(
    x_ptr,
    y_ptr,
    gate_ptr,
    shift_ptr,
    C,
    HW,
    s_b,
    s_c,
    s_hw,
    HAS_SHIFT: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_HW: tl.constexpr,
):
    b = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    hw = tl.program_id(2) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    mask = (c[:, None] < C) & (hw[None, :] < HW)
    offsets = _tile(b, c, hw, s_b, s_c, s_hw)
    gate = tl.load(gate_ptr + b * C + c, mask=c < C, other=0.0)
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    y = x * gate[:, None]
    if HAS_SHIFT:
        y += tl.load(shift_ptr + b * C + c, mask=c < C, other=0.0)[:, None]
    tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _linear_kernel(
    in_ptr,
    w_ptr,
    bias_ptr,
    out_ptr,
    N_IN,
    N_OUT,
    HAS_BIAS: tl.constexpr,
    SIGMOID: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_HW: tl.constexpr,
):
    """out[b, o] = act(sum_i w[o, i] * in[b, i] + bias[o]): relu, or sigmoid when SIGMOID."""
    b = tl.program_id(0)
    o = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    acc = tl.zeros([BLOCK_C], dtype=tl.float32)
    for start in range(0, N_IN, BLOCK_HW):
        i = start + tl.arange(0, BLOCK_HW)
        w = tl.load(
            w_ptr + o[:, None] * N_IN + i[None, :],
            mask=(o[:, None] < N_OUT) & (i[None, :] < N_IN),
            other=0.0,
        ).to(tl.float32)
        v = tl.load(in_ptr + b * N_IN + i, mask=i < N_IN, other=0.0)
        acc += tl.sum(w * v[None, :], axis=1)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + o, mask=o < N_OUT, other=0.0).to(tl.float32)
    acc = tl.sigmoid(acc) if SIGMOID else tl.maximum(acc, 0.0)
    tl.store(out_ptr + b * N_OUT + o, acc, mask=o < N_OUT)


@triton.jit
def _eca_fused_kernel(
    x_ptr,
    y_ptr,
    w_ptr,
    pooled_ptr,
    gate_ptr,
    window_ptr,
    C,
    HW,
    s_b,
    s_c,
    s_hw,
    K: tl.constexpr,
    WINDOW: tl.constexpr,  # a power of two that holds BLOCK_C + 2 * (K // 2)
    BLOCK_C: tl.constexpr,
    BLOCK_HW: tl.constexpr,
):
    HALF: tl.constexpr = K // 2
    b = tl.program_id(0)
    block = tl.program_id(1)
    first = block * BLOCK_C
    # 1. pool this block's channels and the halo on either side (zero outside [0, C))
    i = tl.arange(0, WINDOW)
    c_window = first - HALF + i
    in_window = (i < BLOCK_C + 2 * HALF) & (c_window >= 0) & (c_window < C)
    acc = tl.zeros([WINDOW], dtype=tl.float32)
    for start in range(0, HW, BLOCK_HW):
        hw = start + tl.arange(0, BLOCK_HW)
        mask = in_window[:, None] & (hw[None, :] < HW)
        tile = tl.load(x_ptr + _tile(b, c_window, hw, s_b, s_c, s_hw), mask=mask, other=0.0)
        acc += tl.sum(tile.to(tl.float32), axis=1)
    # 2. the k-tap convolution reads shifted windows: stage them in this program's scratch row
    row = window_ptr + (b * tl.num_programs(1) + block) * WINDOW
    tl.store(row + i, acc / HW)
    tl.debug_barrier()
    j = tl.arange(0, BLOCK_C)
    c = first + j
    z = tl.zeros([BLOCK_C], dtype=tl.float32)
    for tap in tl.static_range(K):
        z += tl.load(w_ptr + tap).to(tl.float32) * tl.load(row + j + tap)
    gate = tl.sigmoid(z)
    tl.store(gate_ptr + b * C + c, gate, mask=c < C)
    tl.store(pooled_ptr + b * C + c, tl.load(row + j + HALF), mask=c < C)
    # 3. scale this block's channels, which the pooling pass has just brought into L2
    for start in range(0, HW, BLOCK_HW):
        hw = start + tl.arange(0, BLOCK_HW)
        mask = (c[:, None] < C) & (hw[None, :] < HW)
        offsets = _tile(b, c, hw, s_b, s_c, s_hw)
        x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        tl.store(y_ptr + offsets, (x * gate[:, None]).to(y_ptr.dtype.element_ty), mask=mask)


# ---- launchers: the same interface as the CPU extension ----------------------------------------


def _layout(x: torch.Tensor) -> tuple[int, int, int, bool, int, int, int]:
    """(B, C, H*W, channels_last, s_b, s_c, s_hw)."""
    b, c, h, w = x.shape
    if x.is_contiguous():
        return b, c, h * w, False, c * h * w, h * w, 1
    if x.is_contiguous(memory_format=torch.channels_last):
        return b, c, h * w, True, h * w * c, 1, c
    raise ValueError("x must be contiguous or channels_last")


def pool(x: torch.Tensor) -> torch.Tensor:
    b, c, hw, channels_last, *strides = _layout(x)
    pooled = torch.empty(b, c, device=x.device, dtype=torch.float32)
    cfg = reduce_config(b, c, hw, channels_last)
    wrap_triton(_pool_kernel)[(b, triton.cdiv(c, cfg.block_c))](
        x, pooled, c, hw, *strides, BLOCK_C=cfg.block_c, BLOCK_HW=cfg.block_hw,
        num_warps=cfg.num_warps,
    )  # fmt: skip
    return pooled


def scale(x: torch.Tensor, gate: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """y = x * gate[b, c] (+ shift[b, c]); gate and shift are (B, C) float32, contiguous."""
    b, c, hw, channels_last, *strides = _layout(x)
    y = torch.empty_like(x)
    cfg = scale_config(b, c, hw, channels_last)
    grid = (b, triton.cdiv(c, cfg.block_c), triton.cdiv(hw, cfg.block_hw))
    wrap_triton(_scale_kernel)[grid](
        x, y, gate, gate if shift is None else shift, c, hw, *strides,
        HAS_SHIFT=shift is not None, BLOCK_C=cfg.block_c, BLOCK_HW=cfg.block_hw,
        num_warps=cfg.num_warps,
    )  # fmt: skip
    return y


def eca_forward(x: torch.Tensor, weight: torch.Tensor) -> list[torch.Tensor]:
    """weight: the k taps, float32 and contiguous."""
    b, c, hw, channels_last, *strides = _layout(x)
    k = weight.numel()
    if k > MAX_ECA_KERNEL_SIZE:
        raise ValueError(
            f"eca_fused on GPUs: kernel_size={k}; allowed: up to {MAX_ECA_KERNEL_SIZE}"
        )
    cfg, window_size = eca_config(b, c, hw, channels_last, k)
    y = torch.empty_like(x)
    pooled = torch.empty(b, c, device=x.device, dtype=torch.float32)
    gate = torch.empty_like(pooled)
    blocks = triton.cdiv(c, cfg.block_c)
    window = torch.empty(b * blocks * window_size, device=x.device, dtype=torch.float32)
    wrap_triton(_eca_fused_kernel)[(b, blocks)](
        x, y, weight, pooled, gate, window, c, hw, *strides, K=k, WINDOW=window_size,
        BLOCK_C=cfg.block_c, BLOCK_HW=cfg.block_hw, num_warps=cfg.num_warps,
    )  # fmt: skip
    return [y, pooled, gate]


def linear(v: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, sigmoid: bool):
    """act(v @ weight.T + bias) for (B, N_IN) float32 v: relu, or sigmoid when `sigmoid`."""
    n_batch, n_in = v.shape
    n_out = weight.shape[0]
    out = torch.empty(n_batch, n_out, device=v.device, dtype=torch.float32)
    cfg = mlp_config(n_in, n_out)
    wrap_triton(_linear_kernel)[(n_batch, triton.cdiv(n_out, cfg.block_c))](
        v, weight, weight if bias is None else bias, out, n_in, n_out,
        HAS_BIAS=bias is not None, SIGMOID=sigmoid, BLOCK_C=cfg.block_c,
        BLOCK_HW=cfg.block_hw, num_warps=cfg.num_warps,
    )  # fmt: skip
    return out


def se_forward(x, w1, b1, w2, b2) -> list[torch.Tensor]:
    """w1 (R, C), w2 (C, R) contiguous; b1, b2 or None."""
    pooled = pool(x)
    gate = linear(linear(pooled, w1, b1, sigmoid=False), w2, b2, sigmoid=True)
    return [scale(x, gate), pooled, gate]


def channel_dot(dy: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    b, c, hw, channels_last, *strides = _layout(x)
    out = torch.empty(b, c, device=x.device, dtype=torch.float32)
    cfg = reduce_config(b, c, hw, channels_last)
    wrap_triton(_channel_dot_kernel)[(b, triton.cdiv(c, cfg.block_c))](
        dy, x, out, c, hw, *strides, BLOCK_C=cfg.block_c, BLOCK_HW=cfg.block_hw,
        num_warps=cfg.num_warps,
    )  # fmt: skip
    return out


def gate_input_grad(dy: torch.Tensor, gate: torch.Tensor, dpooled: torch.Tensor) -> torch.Tensor:
    """dx = dy * gate + dpooled / (H*W); gate and dpooled (B, C) float32, contiguous."""
    hw = dy.shape[2] * dy.shape[3]
    return scale(dy, gate, dpooled / hw)
