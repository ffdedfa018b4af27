"""The machine's roofline ceilings, measured in the run: copy bandwidth and matmul throughput.

A large copy (reads and writes a buffer larger than the last-level cache) gives the memory
bandwidth; a large square matmul gives the compute ceiling. A ladder of smaller copies gives
the bandwidth a working set of each size sees (in L1, L2, L3), since a block whose input and
output fit in a cache is fed faster than memory can feed it: each point of a roofline has the
roof of its own working set (`bench.report.roofs`). All are timed with the same timer as the
cases, so the roofline compares like with like.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from .timing import measure

# sizes: a copy far larger than any cache, a matmul large enough to reach peak on that device
COPY_BYTES = {"cpu": 256 * 2**20, "cuda": 1024 * 2**20}
MATMUL_N = {"cpu": 2048, "cuda": 8192}
# working sets (source and target together) of the ladder's copies, from L1 to beyond the L2
# of a GPU; the largest is COPY_BYTES' own, added by measure_ceilings
LADDER_BYTES = [2**k for k in range(15, 28)]  # 32 KiB, 64 KiB, ... 128 MiB


def _time_copy(device: str, nbytes: int, threads: int | None, max_time_s: float):
    source = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    return measure(
        lambda: target.copy_(source),
        device=device,
        threads=threads,
        min_time_s=0.0,
        max_time_s=max_time_s,
        min_samples=5,
    )


def copy_ladder(device: str, threads: int | None, max_time_s: float) -> list[list[float]]:
    """[working-set bytes, copy bandwidth in bytes/s] for each of LADDER_BYTES."""
    rungs = []
    for footprint in LADDER_BYTES:
        copy = _time_copy(device, footprint // 2, threads, max_time_s)
        rungs.append([footprint, footprint / copy.median])
    return rungs


def measure_ceilings(
    device: str, dtype: torch.dtype, *, threads: int | None = None, max_time_s: float = 1.0
) -> dict[str, Any]:
    """Memory bandwidth (bytes/s) and matmul FLOP/s of `device` at `dtype`."""
    kind = torch.device(device).type
    copy = _time_copy(device, COPY_BYTES[kind], threads, max_time_s)
    ladder = copy_ladder(device, threads, max_time_s / 8)
    ladder.append([2 * COPY_BYTES[kind], 2 * COPY_BYTES[kind] / copy.median])
    n = MATMUL_N[kind]
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    matmul = measure(
        lambda: torch.mm(a, b, out=out),
        device=device,
        threads=threads,
        min_time_s=0.0,
        max_time_s=max_time_s,
        min_samples=5,
    )
    return {
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "memory_bandwidth_bytes_per_s": 2 * COPY_BYTES[kind] / copy.median,
        "peak_flops_per_s": 2 * n**3 / matmul.median,
        "copy_bytes": COPY_BYTES[kind],
        "copy_ladder": json.dumps(ladder),  # [working-set bytes, bytes/s], small to large
        "matmul_n": n,
        "threads": matmul.threads,
        # the cases run in this process under the same switches: recorded to read both alike
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
