"""`measure` against ``torch.utils.benchmark`` (``python -m bench check timing`` prints it).

Both time the same blocks interleaved (ours, theirs, ours, ...) with the same budget, so a drift
of the machine hits both alike; each case gives each median, their ratio and each one's spread.
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


def self_check(
    threads: int = 1,
    repeats: int = 5,
    min_time_s: float = 1.0,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Our median against torch.utils.benchmark's, and each one's spread over `repeats` runs;
    `report` is given each case's row as soon as it is measured.

    The two run interleaved (ours, theirs, ours, ...) with the same budget (`min_time_s`), so a
    drift of the machine hits both alike.
    """
    from torch.utils.benchmark import Timer

    rows = []
    for label, fn in _self_check_cases():
        ours, theirs = [], []
        timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
        for _ in range(repeats):
            budget = {"min_time_s": min_time_s, "max_time_s": 2 * min_time_s}
            ours.append(measure(fn, threads=threads, **budget).median)
            theirs.append(timer.blocked_autorange(min_run_time=min_time_s).median)
        row = {
            "case": label,
            "ours_us": statistics.median(ours) * 1e6,
            "torch_benchmark_us": statistics.median(theirs) * 1e6,
            "ratio": statistics.median(ours) / statistics.median(theirs),
            "ours_spread": _spread(ours),
            "torch_benchmark_spread": _spread(theirs),
        }
        rows.append(row)
        if report is not None:
            report(row)
    return rows
