"""FLOPs, MACs and bytes moved, counted at the dispatcher.

A `TorchDispatchMode` sees every aten op that runs (functional calls, SDPA under any backend, the
ops autograd runs for backward, custom ops), so nothing a block does is missed the way a
module-hook counter misses pooling, sigmoid and the broadcast multiply.

Conventions (also in docs/explanation/measurement.md):
- matmul and convolution: 1 MAC = 2 FLOPs; a bias add is 1 FLOP per output element on top.
- elementwise ops: 1 FLOP per output element per arithmetic operation; the transcendental
  functions count as one operation each, so sigmoid = 1/(1+exp(-x)) is 4 (negate, exp, add,
  divide) and its backward g*y*(1-y) is 3.
- reductions (sum, amax, ...): 1 FLOP per input element; mean adds one divide per output.
- softmax: 5 FLOPs per element (max, subtract, exp, sum, divide); its backward 4.
- scaled dot-product attention: the two matmuls (QK^T and PV) as MACs, plus the scale (1) and the
  softmax (5) per score element, so a fused kernel and the explicit softmax(QK^T/sqrt(d))V score
  the same. Backward: the recomputed QK^T plus four matmuls, 11 FLOPs per score element.
- bytes: bytes of the tensors an op reads plus the tensors it writes, each counted once per
  distinct element (a broadcast stride-0 dimension is read once). A lower bound on memory
  traffic: caches and fused kernels may do better, re-reads inside a kernel worse. Views are free.
- an op with no formula that is not pure data movement is listed in `Counts.unscored_ops`
  (0 FLOPs), so a gap in the counter is visible rather than silent.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# (flops, macs) for one call, from its arguments and outputs
Formula = Callable[[tuple, dict, Any], tuple[int, int]]


@dataclass
class OpCounts:
    """Totals for one aten op (by overload packet, e.g. ``aten.convolution``)."""

    calls: int = 0
    flops: int = 0
    macs: int = 0
    bytes_read: int = 0
    bytes_written: int = 0


@dataclass
class Counts:
    """What a call did: FLOPs, MACs and bytes, in total and per op."""

    by_op: dict[str, OpCounts] = field(default_factory=dict)
    unscored_ops: set[str] = field(default_factory=set)

    @property
    def flops(self) -> int:
        return sum(op.flops for op in self.by_op.values())

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.by_op.values())

    @property
    def bytes_read(self) -> int:
        return sum(op.bytes_read for op in self.by_op.values())

    @property
    def bytes_written(self) -> int:
        return sum(op.bytes_written for op in self.by_op.values())

    @property
    def bytes_moved(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per byte moved (the roofline's x axis)."""
        return self.flops / self.bytes_moved if self.bytes_moved else 0.0

    def table(self) -> list[dict[str, Any]]:
        """One dict per op, most FLOPs first (ready for pandas.DataFrame)."""
        rows = [{"op": name, **vars(op)} for name, op in self.by_op.items()]
        return sorted(rows, key=lambda row: (-row["flops"], -row["bytes_read"]))


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def _touched_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements a tensor view covers (stride-0 dims read once)."""
    distinct = math.prod(s for s, st in zip(t.shape, t.stride(), strict=True) if st != 0)
    return distinct * t.element_size()


# ---- formulas ---------------------------------------------------------------------------------


def _mm(args, kwargs, out):
    (m, k), n = args[0].shape, args[1].shape[-1]
    return 2 * m * n * k, m * n * k


def _addmm(args, kwargs, out):
    flops, macs = _mm(args[1:], kwargs, out)
    return flops + out.numel(), macs


def _bmm(args, kwargs, out):
    b, m, k = args[0].shape
    n = args[1].shape[-1]
    return 2 * b * m * n * k, b * m * n * k


def _baddbmm(args, kwargs, out):
    flops, macs = _bmm(args[1:], kwargs, out)
    return flops + out.numel(), macs


def _conv_macs(x_shape, w_shape, out_shape, transposed: bool) -> int:
    # every output (every input, when transposed) position does one MAC per weight element
    # of its group, the same rule torch.utils.flop_counter uses
    spatial = x_shape[2:] if transposed else out_shape[2:]
    return x_shape[0] * _numel(w_shape) * _numel(spatial)


def _convolution(args, kwargs, out):
    x, w, bias, transposed = args[0], args[1], args[2], args[6]
    macs = _conv_macs(x.shape, w.shape, out.shape, transposed)
    return 2 * macs + (out.numel() if bias is not None else 0), macs


def _convolution_backward(args, kwargs, out):
    grad_out, x, w = args[0], args[1], args[2]
    transposed, output_mask = args[7], args[10]
    one_pass = _conv_macs(x.shape, w.shape, grad_out.shape, transposed)
    macs = one_pass * (int(output_mask[0]) + int(output_mask[1]))
    bias_grad = grad_out.numel() if output_mask[2] else 0  # a sum over everything but C
    return 2 * macs + bias_grad, macs


def _sdpa_shapes(q, k, v):
    *batch, s_q, d = q.shape
    s_k, d_v = k.shape[-2], v.shape[-1]
    return _numel(batch), s_q, s_k, d, d_v


def _sdpa_forward(args, kwargs, out):
    bh, s_q, s_k, d, d_v = _sdpa_shapes(*args[:3])
    macs = bh * s_q * s_k * (d + d_v)  # Q K^T, then P V
    return 2 * macs + 6 * bh * s_q * s_k, macs  # + scale (1) and softmax (5) per score


def _sdpa_backward(args, kwargs, out):
    bh, s_q, s_k, d, d_v = _sdpa_shapes(*args[1:4])
    macs = bh * s_q * s_k * (3 * d + 2 * d_v)  # recomputed QK^T; dP, dV, dQ, dK
    return 2 * macs + 11 * bh * s_q * s_k, macs


def _per_output_element(flops_per_element: int) -> Formula:
    def formula(args, kwargs, out):
        return flops_per_element * _first_tensor(out).numel(), 0

    return formula


def _per_input_element(flops_per_element: int, plus_per_output: int = 0) -> Formula:
    def formula(args, kwargs, out):
        flops = flops_per_element * args[0].numel()
        return flops + plus_per_output * _first_tensor(out).numel(), 0

    return formula


def _pool(args, kwargs, out):
    kernel = args[1] if len(args) > 1 else kwargs["kernel_size"]
    kernel = [kernel] * 2 if isinstance(kernel, int) else kernel
    return _first_tensor(out).numel() * _numel(kernel), 0


def _batch_norm(per_element_training: int, per_element_eval: int, training_arg: int | None):
    def formula(args, kwargs, out):
        training = True if training_arg is None else bool(args[training_arg])
        per_element = per_element_training if training else per_element_eval
        return per_element * args[0].numel(), 0

    return formula


def _first_tensor(value: Any) -> torch.Tensor:
    leaves, _ = tree_flatten(value)
    return next(leaf for leaf in leaves if isinstance(leaf, torch.Tensor))


_ELEMENTWISE_FLOPS = {  # FLOPs per output element for pointwise ops that are not 1
    "sigmoid": 4,
    "sigmoid_backward": 3,
    "silu": 5,
    "silu_backward": 7,
    "gelu": 8,  # erf form: x * 0.5 * (1 + erf(x / sqrt(2)))
    "gelu_backward": 10,
    "hardsigmoid": 3,
    "addcmul": 2,
    "addcdiv": 2,
    "lerp": 3,
    "where": 0,
}

_FORMULAS: dict[str, Formula] = {
    "aten.mm": _mm,
    "aten.addmm": _addmm,
    "aten.bmm": _bmm,
    "aten.baddbmm": _baddbmm,
    "aten.convolution": _convolution,
    "aten.convolution_backward": _convolution_backward,
    "aten._softmax": _per_output_element(5),
    "aten._log_softmax": _per_output_element(5),
    "aten._softmax_backward_data": _per_output_element(4),
    "aten._log_softmax_backward_data": _per_output_element(3),
    "aten.sum": _per_input_element(1),
    "aten.mean": _per_input_element(1, plus_per_output=1),
    "aten.amax": _per_input_element(1),
    "aten.amin": _per_input_element(1),
    "aten.max": _per_input_element(1),
    "aten.min": _per_input_element(1),
    "aten.var": _per_input_element(3),
    "aten.var_mean": _per_input_element(3),
    "aten.std": _per_input_element(3),
    "aten.linalg_vector_norm": _per_input_element(2),
    "aten.avg_pool2d": _pool,
    "aten.max_pool2d_with_indices": _pool,
    "aten.avg_pool2d_backward": _per_output_element(1),
    "aten.max_pool2d_with_indices_backward": _per_output_element(1),
    "aten._adaptive_avg_pool2d": _per_input_element(1, plus_per_output=1),
    "aten._adaptive_avg_pool2d_backward": _per_output_element(1),
    "aten.adaptive_max_pool2d": _per_input_element(1),
    # training: mean (1) + variance (3) + normalise and affine (2); eval: one fused scale+shift
    "aten.native_batch_norm": _batch_norm(6, 2, training_arg=5),
    "aten._native_batch_norm_legit": _batch_norm(6, 2, training_arg=5),
    "aten._native_batch_norm_legit_no_training": _batch_norm(2, 2, training_arg=None),
    "aten._native_batch_norm_legit_functional": _batch_norm(6, 2, training_arg=5),
    "aten.native_batch_norm_backward": _batch_norm(9, 2, training_arg=7),
    # LayerNorm and GroupNorm normalise with their own statistics, as BatchNorm in training
    "aten.native_layer_norm": _per_input_element(6),
    "aten.native_layer_norm_backward": _per_input_element(9),
    "aten.native_group_norm": _per_input_element(6),
    "aten.native_group_norm_backward": _per_input_element(9),
    # not tagged pointwise in ATen: x * relu6(x + 3) / 6, and its gradient (2x + 3) / 6 * dy
    "aten.hardswish": _per_output_element(4),
    "aten.hardswish_backward": _per_output_element(4),
}
for _name in (
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
    "_scaled_dot_product_attention_math_for_mps",
):
    _FORMULAS[f"aten.{_name}"] = _sdpa_forward
    _FORMULAS[f"aten.{_name}_backward"] = _sdpa_backward

# The fused gates of attention_variants.fused are scored with exactly the FLOPs and MACs of their
# eager twins, forward and backward: the eager module is counted on meta tensors of the same
# shapes (cached per shape). Their bytes stay their own: moving fewer is what fusion is for.


@functools.lru_cache(maxsize=512)
def _eager_twin(name: str, x_shape: tuple, params: tuple, backward: bool) -> tuple[int, int]:
    """(flops, macs) of eager `eca` or `se` at these shapes; with `backward`, of its backward."""
    # called from inside the counter's dispatch, where autograd and the mode stack are switched
    # off for this thread: a fresh thread counts the twin with clean dispatch state
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_count_eager_twin, name, x_shape, params, backward).result()


def _count_eager_twin(name: str, x_shape: tuple, params: tuple, backward: bool) -> tuple[int, int]:
    from attention_variants.eca import ECA
    from attention_variants.se import SqueezeExcite

    channels = x_shape[1]
    with torch.device("meta"):
        if name == "eca":
            (kernel_size,) = params
            module = ECA(channels, kernel_size=kernel_size)
        else:
            hidden, bias = params
            module = SqueezeExcite(channels, reduction=1, bias=bias)
            module.mlp.fc1 = torch.nn.Linear(channels, hidden, bias=bias)
            module.mlp.fc2 = torch.nn.Linear(hidden, channels, bias=bias)
        x = torch.empty(x_shape)
    forward = count(module, x)
    if not backward:
        return forward.flops, forward.macs
    step = count(module, x, backward=True)
    return step.flops - forward.flops, step.macs - forward.macs


def _eca_params(weight: torch.Tensor) -> tuple:
    return (weight.numel(),)


def _se_params(w1: torch.Tensor, b1: torch.Tensor | None) -> tuple:
    return (w1.shape[0], b1 is not None)


for _namespace in ("attention_variants", "attention_variants_cpu"):  # CUDA's ops, the CPU's
    _FORMULAS[f"{_namespace}.eca_gate"] = lambda args, kwargs, out: _eager_twin(
        "eca", tuple(args[0].shape), _eca_params(args[1]), False
    )
    _FORMULAS[f"{_namespace}.se_gate"] = lambda args, kwargs, out: _eager_twin(
        "se", tuple(args[0].shape), _se_params(args[1], args[2]), False
    )
# the CPU library's backward is one op: dy, x, weight(s), ...
_FORMULAS["attention_variants_cpu.eca_backward"] = lambda args, kwargs, out: _eager_twin(
    "eca", tuple(args[0].shape), _eca_params(args[2]), True
)
_FORMULAS["attention_variants_cpu.se_backward"] = lambda args, kwargs, out: _eager_twin(
    "se", tuple(args[0].shape), _se_params(args[2], args[3]), True
)
# the Triton backward's two passes (its gate arithmetic on (B, C) runs as ordinary aten ops)
_FORMULAS["attention_variants.channel_dot"] = lambda args, kwargs, out: (2 * args[0].numel(), 0)
_FORMULAS["attention_variants.gate_input_grad"] = lambda args, kwargs, out: (
    2 * args[0].numel() + args[2].numel(),  # multiply-add per element, dpooled / (H*W)
    0,
)

# pure data movement or allocation: bytes are counted, no FLOPs, and they are not "unscored"
_DATA_MOVEMENT = {
    "aten." + name
    for name in [
        "clone",
        "copy",
        "_to_copy",
        "contiguous",
        "cat",
        "stack",
        "fill",
        "zero",
        "zeros",
        "zeros_like",
        "ones",
        "ones_like",
        "full",
        "full_like",
        "empty",
        "empty_like",
        "empty_strided",
        "new_empty",
        "new_empty_strided",
        "new_zeros",
        "new_ones",
        "new_full",
        "constant_pad_nd",
        "select_backward",
        "slice_backward",
        "index",
        "index_select",
        "gather",
        "scatter",
        "index_put",
        "_index_put_impl",
        "masked_fill",
        "repeat",
        "flip",
        "roll",
        "lift_fresh_copy",
        "scalar_tensor",
        "arange",
        "detach_",
        "alias_copy",
        "view_copy",
        "_local_scalar_dense",
    ]
}
# aliasing ops that the schema does not tag as views
_FREE = {"aten._unsafe_view", "aten.detach", "aten.lift_fresh", "aten._reshape_alias"}


def register_formula(op: str, formula: Formula) -> None:
    """Teach the counter an op, by overload-packet name (e.g. ``"mylib.eca_gate"``).

    `formula(args, kwargs, out)` returns ``(flops, macs)`` for one call.
    """
    _FORMULAS[op] = formula


def _op_name(func) -> str:
    return str(func.overloadpacket)


def _scoring_name(name: str) -> str:
    # in-place and out variants share the functional op's formula (add_ -> add)
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name


class _OpRecorder(TorchDispatchMode):
    def __init__(self, counts: Counts):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self._record(func, args, kwargs, out)
        return out

    def _record(self, func, args, kwargs, out) -> None:
        name = _op_name(func)
        if func.is_view or name in _FREE:
            return
        scoring = _scoring_name(name)
        flops = macs = 0
        if scoring in _FORMULAS:
            flops, macs = _FORMULAS[scoring](args, kwargs, out)
        elif scoring in _DATA_MOVEMENT:
            pass  # some copies are tagged pointwise, but they do no arithmetic
        elif torch.Tag.pointwise in func.tags:
            short = scoring.split(".", 1)[1]
            flops = _ELEMENTWISE_FLOPS.get(short, 1) * _first_tensor(out).numel()
        else:
            self.counts.unscored_ops.add(name)
        inputs = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        outputs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        op = self.counts.by_op.setdefault(name, OpCounts())
        op.calls += 1
        op.flops += int(flops)
        op.macs += int(macs)
        op.bytes_read += sum(_touched_bytes(t) for t in inputs)
        op.bytes_written += sum(_touched_bytes(t) for t in outputs)


def as_grad_inputs(inputs: Sequence[Any]) -> list[Any]:
    """Floating tensors become leaves that require grad, as activations inside a network do."""
    return [
        x.detach().requires_grad_(True)
        if isinstance(x, torch.Tensor) and x.is_floating_point()
        else x
        for x in inputs
    ]


def count(
    module_or_fn: nn.Module | Callable[..., Any], *inputs: Any, backward: bool = False
) -> Counts:
    """Count what one call of `module_or_fn(*inputs)` does (and its backward, if asked).

    With ``backward=True`` floating inputs require grad (as inside a network), and the backward
    pass runs from a gradient of ones; creating that gradient is not counted.
    """
    counts = Counts()
    if not backward:
        with torch.no_grad(), _OpRecorder(counts):
            module_or_fn(*inputs)
        return counts
    inputs = as_grad_inputs(inputs)
    with _OpRecorder(counts):
        out = module_or_fn(*inputs)
    outputs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor) and o.requires_grad]
    if not outputs:
        raise ValueError("backward=True, but no output requires grad: nothing to differentiate")
    grads = [torch.ones_like(o) for o in outputs]
    # gradients left by an earlier step would make backward accumulate (an add per parameter)
    params = list(module_or_fn.parameters()) if isinstance(module_or_fn, nn.Module) else []
    kept = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        with _OpRecorder(counts):
            torch.autograd.backward(outputs, grads)
    finally:
        for p, grad in zip(params, kept, strict=True):
            p.grad = grad
    return counts
