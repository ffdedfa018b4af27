"""Fused against eager against a plain copy, measured side by side, per shape and layout.

    python -m bench.measurement.fused_benchmark [--device cpu|cuda] [--mode infer|train] [--compile]
    python -m bench.measurement.fused_benchmark --fixed-cost

Prints, for eca_fused and se_fused, each variant's median time as a multiple of `x.clone()` of
the same tensor (the memory floor: one read and one write), and fused / eager. Every sample of a
variant is followed by a copy of the same tensor (the suite's one measurement path,
`measure_case`), so a drift of the machine hits both alike; the quality column flags rows
measured while the machine was busy. On CUDA it also
prints the achieved bandwidth of the fused kernels as a share of the copy's, and, with
--compile, `torch.compile` of the eager module. Tensors stay at or under 32 MiB on CPUs: above
that every fresh output is mapped anew and page faults hide what a kernel does.
"""

from __future__ import annotations

import argparse
import statistics

import torch

import attention_variants as av

from .case import CaseMeasurement, TimingBudget, measure_case

SHAPES = [(8, 256, 56, 56), (64, 512, 14, 14), (32, 256, 28, 28), (16, 128, 56, 56),
          (4, 64, 56, 56), (4, 256, 14, 14)]  # fmt: skip
GPU_SHAPES = [(32, 256, 56, 56), (128, 512, 14, 14), (64, 1024, 14, 14), (32, 2048, 7, 7),
              (256, 256, 28, 28), (8, 64, 112, 112)]  # fmt: skip


def over_copy(measured: CaseMeasurement) -> float:
    """Median over samples of time / the paired copy's time: the drift of the machine cancels."""
    timing = measured.timing
    return statistics.median(
        s / r for s, r in zip(timing.samples_s, timing.reference_samples_s, strict=True)
    )


def run(device: str, mode: str, shapes, rounds: int, budget_s: float, compile_eager: bool) -> None:
    budget = TimingBudget(min_time_s=budget_s, max_time_s=4 * budget_s, rounds=rounds)
    print(
        f"device={device} mode={mode} threads={torch.get_num_threads()} "
        f"torch={torch.__version__}; each time over the copy of the same tensor timed right "
        f"after it, medians over {rounds} rounds (bench.measurement.case.measure_case)"
    )
    header = f"{'shape':<20} {'layout':<14} {'variant':<4} {'clone':>9} {'eager/clone':>12} {'fused/clone':>12} {'fused/eager':>12}"
    if compile_eager:
        header += f" {'compiled/clone':>15}"
    if device.startswith("cuda"):
        header += f" {'fused BW / copy BW':>19}"
    print(header + "  quality")
    for shape in shapes:
        for layout, fmt in (
            ("contiguous", torch.contiguous_format),
            ("channels_last", torch.channels_last),
        ):
            x = torch.randn(shape, device=device).contiguous(memory_format=fmt)
            for name in ("eca", "se"):
                eager = av.create(name, shape[1]).to(device)
                fused = av.create(f"{name}_fused", shape[1]).to(device)
                fused.load_state_dict(eager.state_dict())
                measured = {
                    "eager": measure_case(eager, x, mode=mode, budget=budget),
                    "fused": measure_case(fused, x, mode=mode, budget=budget),
                }
                if compile_eager:
                    measured["compiled"] = measure_case(
                        eager, x, mode=mode, budget=budget, compile=True
                    )
                ratio = {key: over_copy(m) for key, m in measured.items()}
                clone = statistics.median(measured["fused"].timing.reference_samples_s)
                line = (
                    f"{'x'.join(map(str, shape)):<20} {layout:<14} {name:<4} "
                    f"{clone * 1e3:7.3f}ms {ratio['eager']:12.2f} "
                    f"{ratio['fused']:12.2f} {ratio['fused'] / ratio['eager']:12.2f}"
                )
                if compile_eager:
                    line += f" {ratio['compiled']:15.2f}"
                if device.startswith("cuda"):
                    # both move 2 x the tensor's bytes: their bandwidths stand as inverse times
                    line += f" {100 / ratio['fused']:18.0f}%"
                flags = sorted({f for m in measured.values() for f in m.flags})
                print(f"{line}  {';'.join(flags) or 'ok'}", flush=True)


def fixed_cost(repeats: int = 7, number: int = 2000) -> None:
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
    print(f"fixed cost of a call on 1x32x2x2 (threads={torch.get_num_threads()}, best of "
          f"{repeats} x {number} calls, torch.inference_mode)")  # fmt: skip
    with torch.inference_mode():
        for name, call in calls.items():
            call()
            best = min(timeit.repeat(call, number=number, repeat=repeats)) / number
            print(f"{name:<55} {best * 1e6:6.2f} us")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", default="infer", choices=["infer", "train"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=0.2, help="minimum seconds per timing")
    parser.add_argument(
        "--compile", action="store_true", help="also torch.compile of the eager module"
    )
    parser.add_argument(
        "--fixed-cost", action="store_true", help="only the cost of a call on a tiny tensor"
    )
    args = parser.parse_args(argv)
    if args.fixed_cost:
        fixed_cost()
        return
    shapes = GPU_SHAPES if args.device.startswith("cuda") else SHAPES
    run(args.device, args.mode, shapes, args.rounds, args.budget_s, args.compile)


if __name__ == "__main__":
    main()
