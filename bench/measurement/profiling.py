"""torch.profiler traces of one case, for TensorBoard's PyTorch Profiler plugin and Perfetto.

Each case gets its own folder under `traces/`, so ``tensorboard --logdir RUN/traces`` lists the
cases as runs; the `*.pt.trace.json` files also open in Perfetto (ui.perfetto.dev) and in
Holistic Trace Analysis. Beside each trace, `top_ops.txt` holds the profiler's top-ops table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler


def trace_name(label: str) -> str:
    """A folder name for a case label: letters, digits, dot, dash, underscore."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")


def profile_case(
    fn: Callable[[], Any],
    trace_dir: Path,
    *,
    device: str = "cpu",
    warmup_steps: int = 1,
    active_steps: int = 3,
) -> Path:
    """Profile `fn` (CPU and, on GPUs, CUDA activity; shapes; memory) into `trace_dir`.

    Returns the path of the top-ops table written beside the trace.
    """
    trace_dir.mkdir(parents=True, exist_ok=True)
    activities = [ProfilerActivity.CPU]
    if torch.device(device).type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(
        activities=activities,
        schedule=schedule(wait=0, warmup=warmup_steps, active=active_steps, repeat=1),
        on_trace_ready=tensorboard_trace_handler(str(trace_dir), worker_name=trace_dir.name),
        record_shapes=True,
        profile_memory=True,
        acc_events=True,
    ) as profiler:
        for _ in range(warmup_steps + active_steps):
            fn()
            if activities[-1] == ProfilerActivity.CUDA:
                torch.cuda.synchronize(device)
            profiler.step()
    sort_by = (
        "self_cuda_time_total" if ProfilerActivity.CUDA in activities else "self_cpu_time_total"
    )
    table = profiler.key_averages(group_by_input_shape=True).table(sort_by=sort_by, row_limit=20)
    top_ops = trace_dir / "top_ops.txt"
    top_ops.write_text(table + "\n")
    return top_ops
