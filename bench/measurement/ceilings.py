"""The machine's roofline ceilings, measured in the run: copy bandwidth and matmul throughput.

A large copy (reads and writes a buffer several times the last-level cache) gives the memory
bandwidth; a large square matmul gives the compute ceiling. Both are measured with the same
timer as the cases, so the roofline compares like with like.
"""

from __future__ import annotations

from typing import Any

import torch

from .timing import measure

# sizes: a copy far larger than any cache, a matmul large enough to reach peak on that device
COPY_BYTES = {"cpu": 256 * 2**20, "cuda": 1024 * 2**20}
MATMUL_N = {"cpu": 1024, "cuda": 8192}


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


def measure_ceilings(
    device: str, dtype: torch.dtype, *, threads: int | None = None, max_time_s: float = 1.0
) -> dict[str, Any]:
    """Memory bandwidth (bytes/s) and matmul FLOP/s of `device` at `dtype`."""
    kind = torch.device(device).type
    copy = _time_copy(device, COPY_BYTES[kind], threads, max_time_s)
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
        "matmul_n": n,
        "threads": matmul.threads,
        # the cases run in this process under the same switches: recorded to read both alike
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
