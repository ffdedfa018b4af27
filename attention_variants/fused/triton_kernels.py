"""Triton kernels for the fused channel gates (GPUs; the CPU runs them under TRITON_INTERPRET=1).

A feature map (B, C, H, W), contiguous or channels_last, is addressed as
``b * s_b + c * s_c + hw * s_hw``; tiles are (BLOCK_C channels) x (BLOCK_HW pixels) and every sum
accumulates in float32 whatever the storage dtype.

- ECA runs as one kernel per (sample, channel block): it pools its channels plus a halo of
  k//2 channels on each side, applies the 1-D convolution and sigmoid, then scales its channels
  while they are still in L2.
- SE needs every channel's mean before any gate, so it pools (one kernel), runs its tiny MLP with
  torch, and scales (a second kernel).
- Backward: one kernel sums dy * x per channel, torch works out the gate's gradient on the tiny
  (B, C) tensors, and one kernel writes dx = dy * gate + dpooled / (H*W).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


def _configs(pairs):
    if INTERPRETED:  # the interpreter is exact but slow: one configuration, no autotuning
        pairs = pairs[:1]
    return [triton.Config({"BLOCK_C": c, "BLOCK_HW": hw}, num_warps=w) for c, hw, w in pairs]


REDUCE_CONFIGS = _configs(
    [(16, 64, 4), (32, 128, 4), (16, 256, 4), (64, 64, 4), (32, 256, 8), (8, 512, 4)]
)
# ECA's window is 2 * BLOCK_C wide, so every block must cover the halo: BLOCK_C >= 16
ECA_CONFIGS = _configs([(16, 64, 4), (32, 128, 4), (16, 256, 4), (64, 64, 4), (32, 256, 8)])
MAX_ECA_KERNEL_SIZE = 2 * 8 + 1
SCALE_CONFIGS = _configs(
    [(16, 64, 4), (32, 128, 4), (16, 256, 4), (64, 64, 8), (8, 512, 4), (4, 1024, 4)]
)


@triton.jit  # called from the kernels: compiled Triton accepts only jitted helpers
def _tile(b, c, hw, s_b, s_c, s_hw):
    return b * s_b + c[:, None] * s_c + hw[None, :] * s_hw


@triton.autotune(configs=REDUCE_CONFIGS, key=["C", "HW"])
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


@triton.autotune(configs=REDUCE_CONFIGS, key=["C", "HW"])
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


@triton.autotune(configs=SCALE_CONFIGS, key=["C", "HW"])
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


@triton.autotune(configs=ECA_CONFIGS, key=["C", "HW", "K"])
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
    BLOCK_C: tl.constexpr,
    BLOCK_HW: tl.constexpr,
):
    HALF: tl.constexpr = K // 2
    WINDOW: tl.constexpr = 2 * BLOCK_C  # a power of two that holds BLOCK_C + 2 * HALF
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


def _layout(x: torch.Tensor) -> tuple[int, int, int, int, int, int]:
    b, c, h, w = x.shape
    if x.is_contiguous():
        return b, c, h * w, c * h * w, h * w, 1
    if x.is_contiguous(memory_format=torch.channels_last):
        return b, c, h * w, h * w * c, 1, c
    raise ValueError("x must be contiguous or channels_last")


def pool(x: torch.Tensor) -> torch.Tensor:
    b, c, hw, *strides = _layout(x)
    pooled = torch.empty(b, c, device=x.device, dtype=torch.float32)
    grid = lambda meta: (b, triton.cdiv(c, meta["BLOCK_C"]))  # noqa: E731
    _pool_kernel[grid](x, pooled, c, hw, *strides)
    return pooled


def scale(x: torch.Tensor, gate: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    b, c, hw, *strides = _layout(x)
    y = torch.empty_like(x)
    gate = gate.float().contiguous()
    shift_arg = gate if shift is None else shift.float().contiguous()
    grid = lambda meta: (b, triton.cdiv(c, meta["BLOCK_C"]), triton.cdiv(hw, meta["BLOCK_HW"]))  # noqa: E731
    _scale_kernel[grid](x, y, gate, shift_arg, c, hw, *strides, HAS_SHIFT=shift is not None)
    return y


def eca_forward(x: torch.Tensor, weight: torch.Tensor) -> list[torch.Tensor]:
    b, c, hw, *strides = _layout(x)
    k = weight.numel()
    if k > MAX_ECA_KERNEL_SIZE:
        raise ValueError(
            f"eca_fused on GPUs: kernel_size={k}; allowed: up to {MAX_ECA_KERNEL_SIZE}"
        )
    y = torch.empty_like(x)
    pooled = torch.empty(b, c, device=x.device, dtype=torch.float32)
    gate = torch.empty_like(pooled)
    # scratch rows for the shifted windows, 2 * BLOCK_C floats per program: the same total
    # for every BLOCK_C
    window = torch.empty(
        b * 2 * (c + max(cfg.kwargs["BLOCK_C"] for cfg in ECA_CONFIGS)),
        device=x.device,
        dtype=torch.float32,
    )
    grid = lambda meta: (b, triton.cdiv(c, meta["BLOCK_C"]))  # noqa: E731
    _eca_fused_kernel[grid](
        x, y, weight.reshape(-1).float().contiguous(), pooled, gate, window, c, hw, *strides, K=k
    )
    return [y, pooled, gate]


def se_forward(x, w1, b1, w2, b2) -> list[torch.Tensor]:
    pooled = pool(x)
    hidden = torch.relu(
        torch.nn.functional.linear(pooled, w1.float(), None if b1 is None else b1.float())
    )
    gate = torch.sigmoid(
        torch.nn.functional.linear(hidden, w2.float(), None if b2 is None else b2.float())
    )
    return [scale(x, gate), pooled, gate]


def channel_dot(dy: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    b, c, hw, *strides = _layout(x)
    out = torch.empty(b, c, device=x.device, dtype=torch.float32)
    grid = lambda meta: (b, triton.cdiv(c, meta["BLOCK_C"]))  # noqa: E731
    _channel_dot_kernel[grid](dy, x, out, c, hw, *strides)
    return out


def gate_input_grad(dy: torch.Tensor, gate: torch.Tensor, dpooled: torch.Tensor) -> torch.Tensor:
    hw = dy.shape[2] * dy.shape[3]
    return scale(dy, gate, dpooled.float() / hw)
