"""The pytest-benchmark layout: what the suite's perf tests put in `extra_info`, and how a saved
JSON file (``--benchmark-json=FILE --benchmark-save-data``) is read back as cases.

A benchmark measured by the suite's own path (`bench.measurement.case.measure_case`) carries its
samples, their rounds, the paired copy's samples, its quality and what identifies the case, so
`bench compare` reads it with the same statistics as a run directory. A plain pytest-benchmark
entry carries only its own samples (`stats.data`), each counted as a round.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..measurement.case import CaseMeasurement
from .cases import SETTING_FIELDS, SHAPE_FIELDS
from .rundir import quality_flags, quality_text

EXACT_FIELDS = ("flops", "macs", "bytes_moved", "peak_memory_bytes", "params")


class BenchmarkJsonError(ValueError):
    """A file that is not a pytest-benchmark JSON with raw samples."""


def extra_info(
    measured: CaseMeasurement, *, variant: str, role: str, shape: tuple[int, int, int, int],
    mode: str, dtype: str = "float32", device: str = "cpu", memory_format: str = "contiguous",
    compile: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """`benchmark.extra_info` for one case measured by `measure_case`."""
    timing, counts = measured.timing, measured.counts
    batch, channels, height, width = shape
    return {
        "variant": variant, "role": role, "batch": batch, "channels": channels,
        "height": height, "width": width, "dtype": dtype, "device": device, "mode": mode,
        "memory_format": memory_format, "compile": compile, "flops": counts.flops,
        "macs": counts.macs, "bytes_moved": counts.bytes_moved,
        "peak_memory_bytes": measured.peak_memory_bytes, "params": measured.params,
        "quality": quality_text(measured.flags), "samples_s": timing.samples_s,
        "rounds": timing.rounds, "block_sizes": timing.block_sizes,
        "reference_samples_s": timing.reference_samples_s,
    }  # fmt: skip


@dataclass
class BenchmarkEntry:
    """One benchmark of a saved JSON file, as a case."""

    key: str
    label: str
    fields: dict[str, Any]  # role, variant_label, the shape and setting, the exact counts
    samples_s: list[float]
    rounds: list[int]
    reference_samples_s: list[float] | None = None
    flags: tuple[str, ...] = field(default_factory=tuple)


def read_benchmark_json(path: str | Path) -> list[BenchmarkEntry]:
    path = Path(path)
    try:
        benchmarks = json.loads(path.read_text())["benchmarks"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise BenchmarkJsonError(f"{path}: not a pytest-benchmark JSON file ({error})") from error
    entries = []
    for bench in benchmarks:
        stats, info = bench.get("stats", {}), bench.get("extra_info", {})
        key = bench.get("fullname") or bench["name"]
        if "samples_s" in info:  # the suite's own measurement
            samples = [float(s) for s in info["samples_s"]]
            rounds = list(info.get("rounds") or [0] * len(samples))
            references = info.get("reference_samples_s") or None
        elif "data" in stats:
            samples = [float(s) for s in stats["data"]]
            rounds = list(range(len(samples)))  # pytest-benchmark's own rounds
            references = None
        else:
            raise BenchmarkJsonError(
                f"{path}: {bench.get('fullname')} has no raw samples; save the JSON with "
                "pytest --benchmark-json=FILE --benchmark-save-data"
            )
        fields = {
            "role": info.get("role", "variant"),
            "variant_label": info.get("variant", bench.get("name")),
            **{k: info.get(k, "") for k in (*SHAPE_FIELDS, *SETTING_FIELDS)},
            **{k: info.get(k) for k in EXACT_FIELDS},
        }
        entries.append(
            BenchmarkEntry(key, bench.get("name", key), fields, samples, rounds,
                           None if references is None else [float(r) for r in references],
                           quality_flags(info.get("quality", "ok")))
        )  # fmt: skip
    if not entries:
        raise BenchmarkJsonError(f"{path}: holds no benchmarks")
    return entries
