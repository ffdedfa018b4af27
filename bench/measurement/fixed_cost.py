"""What a fused call costs besides its memory traffic (`bench fused --fixed-cost`): calls on a
tensor of 128 floats, where the work is nothing and the cost of getting to the kernel is all.

On CUDA the calls are timed on the host without synchronising inside the loop: what is timed
is the CPU's time to issue a call (Python, the dispatcher, Triton's launcher), which is what
keeps a GPU waiting when its kernels are short. With `out`, one fused call of each block is also
profiled (torch.profiler, CPU and CUDA activity): the profiler's table and trace are written
there, and the CPU time per call the profiler saw is printed beside the timed one.
"""

from __future__ import annotations

import timeit
from pathlib import Path

import torch

import attention_variants as av

PROFILED_CALLS = 100


def _calls(device: torch.device) -> dict:
    x = torch.randn(1, 32, 2, 2, device=device)
    eager = {name: av.create(name, 32).to(device).eval() for name in ("eca", "se")}
    fused = {name: av.create(f"{name}_fused", 32).to(device).eval() for name in ("eca", "se")}
    w, mlp = fused["eca"].conv.weight.detach(), fused["se"].mlp
    se_args = (x, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias)
    if device.type == "cpu":
        from attention_variants.fused.cpu import extension

        ops, kind = extension(), "C++ op and autograd"
        eca_op, se_op = ops.eca_gate, ops.se_gate
    else:
        from attention_variants.fused import ops

        kind = "triton_op"
        eca_op, se_op = ops.eca_gate, ops.se_gate
    namespace = "attention_variants_cpu" if device.type == "cpu" else "attention_variants"
    return {
        "x.clone()": lambda: x.clone(),
        "eca module (eager)": lambda: eager["eca"](x),
        f"{namespace}.eca_gate ({kind})": lambda: eca_op(x, w),
        "eca_fused module": lambda: fused["eca"](x),
        "se module (eager)": lambda: eager["se"](x),
        f"{namespace}.se_gate ({kind})": lambda: se_op(*se_args),
        "se_fused module": lambda: fused["se"](x),
    }


def _host_seconds(call, device: torch.device, repeats: int, number: int) -> float:
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    best = float("inf")
    for _ in range(repeats):
        sync()
        best = min(best, timeit.timeit(call, number=number) / number)
        sync()  # the queued kernels run outside the next repeat
    return best


def _profile(call, device: torch.device, out: Path, name: str) -> float:
    """Profile `PROFILED_CALLS` calls of `call`; the CPU time per call of its top-level
    events (self times summed), with the table and a Chrome trace written to `out`."""
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as profiler:
        for _ in range(PROFILED_CALLS):
            with record_function("fused_call"):
                call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    averages = profiler.key_averages()
    (out / f"profile_{name}.txt").write_text(
        averages.table(sort_by="cpu_time_total", row_limit=25) + "\n"
    )
    profiler.export_chrome_trace(str(out / f"profile_{name}.json"))
    (event,) = [e for e in averages if e.key == "fused_call"]
    return event.cpu_time_total / event.count / 1e6


def fixed_cost(
    device: str = "cpu", repeats: int = 7, number: int = 2000, out: str | Path | None = None
) -> list[str]:
    """What a call costs besides its memory traffic: on a tensor of 128 floats, the best of
    `repeats` host timings of `number` inference calls each; with `out`, a profile of each
    fused module's call there and the lines in `out`/fixed_cost.txt."""
    device = torch.device(device)
    calls = _calls(device)
    lines = [f"fixed cost of a call on 1x32x2x2, {device} (threads={torch.get_num_threads()}, "
             f"best of {repeats} x {number} calls, torch.inference_mode, host time)"]  # fmt: skip
    print(lines[0], flush=True)
    with torch.inference_mode():
        for name, call in calls.items():
            call()
            lines.append(f"{name:<55} {_host_seconds(call, device, repeats, number) * 1e6:6.2f} us")
            print(lines[-1], flush=True)
        if out is not None:
            out = Path(out)
            out.mkdir(parents=True, exist_ok=True)
            for name in ("eca_fused", "se_fused"):
                seconds = _profile(calls[f"{name} module"], device, out, name)
                lines.append(f"{name + ' module, profiled CPU time':<55} {seconds * 1e6:6.2f} us")
                print(lines[-1], flush=True)
    if out is not None:
        (out / "fixed_cost.txt").write_text("\n".join(lines) + "\n")
    return lines
