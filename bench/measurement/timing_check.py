"""``python -m bench.measurement.timing_check``: `measure` against ``torch.utils.benchmark``.

Both time the same blocks interleaved (ours, theirs, ours, ...) with the same budget, so a drift
of the machine hits both alike; prints each median, their ratio and each one's spread.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .timing import inference_fn, measure


def _self_check_cases() -> Sequence[tuple[str, Callable[[], Any]]]:
    import attention_variants as av

    torch.manual_seed(0)
    cases = []
    for name, channels, size in (
        ("eca", 64, 56),
        ("se", 256, 28),
        ("cbam", 128, 28),
        ("eca_mha", 64, 14),
    ):
        module = av.create(name, channels)
        x = torch.randn(8, channels, size, size)
        cases.append((f"{name} C={channels} {size}x{size} infer", inference_fn(module, x)))
    return cases


def _spread(values: Sequence[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def self_check(threads: int = 1, repeats: int = 5) -> list[dict[str, Any]]:
    """Our median against torch.utils.benchmark's, and each one's spread over `repeats` runs.

    The two run interleaved (ours, theirs, ours, ...) with the same one-second budget, so a
    drift of the machine hits both alike.
    """
    from torch.utils.benchmark import Timer

    rows = []
    for label, fn in _self_check_cases():
        ours, theirs = [], []
        timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
        for _ in range(repeats):
            ours.append(measure(fn, threads=threads, min_time_s=1.0, max_time_s=2.0).median)
            theirs.append(timer.blocked_autorange(min_run_time=1.0).median)
        row = {
            "case": label,
            "ours_us": statistics.median(ours) * 1e6,
            "torch_benchmark_us": statistics.median(theirs) * 1e6,
            "ratio": statistics.median(ours) / statistics.median(theirs),
            "ours_spread": _spread(ours),
            "torch_benchmark_spread": _spread(theirs),
        }
        rows.append(row)
        print(
            f"{label:<26} ours {row['ours_us']:8.1f} us  torch.utils.benchmark "
            f"{row['torch_benchmark_us']:8.1f} us  ratio {row['ratio']:.3f}  spread of {repeats} "
            f"repeats: ours {row['ours_spread'] * 100:4.1f}%, "
            f"torch.utils.benchmark {row['torch_benchmark_spread'] * 100:4.1f}%",
            flush=True,
        )
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        description="Self-check of bench.measurement.timing on the CPU"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = self_check(args.threads, args.repeats)
    worst_ratio = max(abs(r["ratio"] - 1) for r in results)
    print(
        f"threads={args.threads}: largest difference from torch.utils.benchmark "
        f"{worst_ratio * 100:.1f}% (goal <= 5%); largest repeat spread: ours "
        f"{max(r['ours_spread'] for r in results) * 100:.1f}%, torch.utils.benchmark "
        f"{max(r['torch_benchmark_spread'] for r in results) * 100:.1f}% (goal <= 2%)"
    )
