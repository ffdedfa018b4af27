"""Fused against eager against a plain copy, measured side by side, per shape and layout.

    python -m bench.measurement.fused_benchmark [--device cpu|cuda] [--mode infer|train] [--compile]

Prints, for eca_fused and se_fused, each variant's median time as a multiple of `x.clone()` of
the same tensor (the memory floor: one read and one write), and fused / eager. The three are
timed in interleaved rounds so that a drift of the machine hits all alike. On CUDA it also
prints the achieved bandwidth of the fused kernels as a share of the copy's, and, with
--compile, `torch.compile` of the eager module. Tensors stay at or under 32 MiB on CPUs: above
that every fresh output is mapped anew and page faults hide what a kernel does.
"""

from __future__ import annotations

import argparse
import statistics

import torch

import attention_variants as av

from .timing import measure, mode_fn

SHAPES = [(8, 256, 56, 56), (64, 512, 14, 14), (32, 256, 28, 28), (16, 128, 56, 56),
          (4, 64, 56, 56), (4, 256, 14, 14)]  # fmt: skip
GPU_SHAPES = [(32, 256, 56, 56), (128, 512, 14, 14), (64, 1024, 14, 14), (32, 2048, 7, 7),
              (256, 256, 28, 28), (8, 64, 112, 112)]  # fmt: skip


def _clone_fn(mode: str, x: torch.Tensor):
    if mode == "infer":
        return lambda: x.clone()
    leaf = x.detach().requires_grad_(True)
    upstream = torch.randn_like(x)
    return lambda: leaf.clone().backward(upstream)


def _median_of_rounds(
    fns: dict[str, object], device: str, rounds: int, budget_s: float
) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(
                measure(fn, device=device, min_time_s=budget_s, max_time_s=4 * budget_s).median
            )
    return {name: statistics.median(values) for name, values in times.items()}


def run(device: str, mode: str, shapes, rounds: int, budget_s: float, compile_eager: bool) -> None:
    print(
        f"device={device} mode={mode} threads={torch.get_num_threads()} "
        f"torch={torch.__version__}; times are medians of {rounds} interleaved rounds"
    )
    header = f"{'shape':<20} {'layout':<14} {'variant':<4} {'clone':>9} {'eager/clone':>12} {'fused/clone':>12} {'fused/eager':>12}"
    if compile_eager:
        header += f" {'compiled/clone':>15}"
    if device.startswith("cuda"):
        header += f" {'fused BW / copy BW':>19}"
    print(header)
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
                fns = {
                    "clone": _clone_fn(mode, x),
                    "eager": mode_fn(mode, eager, x),
                    "fused": mode_fn(mode, fused, x),
                }
                if compile_eager:
                    fns["compiled"] = mode_fn(mode, torch.compile(eager), x)
                t = _median_of_rounds(fns, device, rounds, budget_s)
                line = (
                    f"{'x'.join(map(str, shape)):<20} {layout:<14} {name:<4} "
                    f"{t['clone'] * 1e3:7.3f}ms {t['eager'] / t['clone']:12.2f} "
                    f"{t['fused'] / t['clone']:12.2f} {t['fused'] / t['eager']:12.2f}"
                )
                if compile_eager:
                    line += f" {t['compiled'] / t['clone']:15.2f}"
                if device.startswith("cuda"):
                    # both move 2 x the tensor's bytes: their bandwidths stand as inverse times
                    line += f" {t['clone'] / t['fused'] * 100:18.0f}%"
                print(line, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", default="infer", choices=["infer", "train"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=0.2, help="minimum seconds per timing")
    parser.add_argument(
        "--compile", action="store_true", help="also torch.compile of the eager module"
    )
    args = parser.parse_args(argv)
    shapes = GPU_SHAPES if args.device.startswith("cuda") else SHAPES
    run(args.device, args.mode, shapes, args.rounds, args.budget_s, args.compile)


if __name__ == "__main__":
    main()
