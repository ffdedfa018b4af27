"""What a fused call costs besides its memory traffic (`bench fused --fixed-cost`): calls on a
tensor of 128 floats, where the work is nothing and the cost of getting to the kernel is all."""

from __future__ import annotations

import torch

import attention_variants as av


def fixed_cost(repeats: int = 7, number: int = 2000) -> list[str]:
    """What a call costs besides its memory traffic: on a tensor of 128 floats, the best of
    `repeats` timings of `number` inference calls each, CPU only."""
    import timeit

    from attention_variants.fused import ops
    from attention_variants.fused.cpu import extension

    cpu = extension()
    x = torch.randn(1, 32, 2, 2)
    eca, se = av.create("eca_fused", 32).eval(), av.create("se_fused", 32).eval()
    w, mlp = eca.conv.weight.detach(), se.mlp
    se_args = (x, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias)
    calls = {
        "x.clone()": lambda: x.clone(),
        "attention_variants_cpu.eca_gate (C++ op and autograd)": lambda: cpu.eca_gate(x, w),
        "attention_variants.eca_gate (Python custom op)": lambda: ops.eca_gate(x, w),
        "eca_fused module": lambda: eca(x),
        "attention_variants_cpu.se_gate (C++ op and autograd)": lambda: cpu.se_gate(*se_args),
        "attention_variants.se_gate (Python custom op)": lambda: ops.se_gate(*se_args),
        "se_fused module": lambda: se(x),
    }
    lines = [f"fixed cost of a call on 1x32x2x2 (threads={torch.get_num_threads()}, best of "
             f"{repeats} x {number} calls, torch.inference_mode)"]  # fmt: skip
    with torch.inference_mode():
        for name, call in calls.items():
            call()
            best = min(timeit.repeat(call, number=number, repeat=repeats)) / number
            lines.append(f"{name:<55} {best * 1e6:6.2f} us")
            print(lines[-1] if len(lines) > 2 else "\n".join(lines), flush=True)
    return lines
