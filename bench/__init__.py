"""The benchmark harness, in four wings that follow the data.

``measurement`` (time, count, memory, environment) knows nothing of sweeps; ``sweep`` expands a
spec into cases and writes run directories; ``report`` and ``gate`` read run directories. The
names below are the public face for user scripts, so they do not depend on the layout.
"""

from importlib import import_module
from typing import Any

# Loaded on first use: importing a wing here would run it twice under `python -m bench.<wing>.x`.
_PUBLIC = {
    "build_report": ("bench.report.builder", "report"),
    "capture": ("bench.measurement.environment", "capture"),
    "compare": ("bench.gate.compare", "compare"),
    "count": ("bench.measurement.counting", "count"),
    "measure": ("bench.measurement.timing", "measure"),
    "peak_memory": ("bench.measurement.memory", "peak_memory"),
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    return getattr(import_module(module), attribute)


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
