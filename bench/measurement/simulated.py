"""The simulated instrument: a case's call counted by valgrind's callgrind, not timed.

Under ``timing.instrument: simulated`` a sweep runs in one process under
``valgrind --tool=callgrind --instr-atstart=no --cache-sim=yes``. Nothing is counted until a
case's region starts (import, building and warm-up run uninstrumented); each counted call lies
between two client requests (`csrc/valgrind_client.c`, built once with the system's C compiler
and loaded with ctypes), starts from empty simulated caches with the garbage collector off, and
has its counts dumped to a file of its own, read once the case's calls are done. The counts
are instructions, first-level and last-level cache misses of a simulated cache of fixed
geometry (`CACHES`), and an estimate of cycles by KCachegrind's formula (`CYCLE_FORMULA`). They
depend on the code and the inputs, not on what else the machine does, so one run per side
tells a change of a few percent (the last level's misses less so: `bench.gate.counted`).

What varies between processes is pinned: the hash seed, one thread, the inputs (seeded), and
the CPU kernels PyTorch, MKL and oneDNN pick (`CPU_CAPABILITY`: valgrind runs no AVX-512, and
its fused multiply-add is slow enough that matrix kernels run without it).
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

LINE_BYTES = 64
# the simulated caches, the same on every machine (valgrind would otherwise copy the host's):
# size, associativity, line size
# a last level of 32 MiB holds a training step's working set at the gate's shapes (up to 20 MB),
# which overflowed 8 MiB
CACHES = {
    "I1": (32768, 8, LINE_BYTES),
    "D1": (32768, 8, LINE_BYTES),
    "LL": (33554432, 16, LINE_BYTES),
}
# the kernels PyTorch, MKL and oneDNN pick on this instrument: valgrind runs no AVX-512, and it
# runs fused multiply-add in software (a 2x64x28x28 convolution: 2.7 s a call, against 0.02 s
# without FMA), so the matrix libraries take their kernels without it
CPU_CAPABILITY = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    "ONEDNN_MAX_CPU_ISA": "AVX",
    # the fused blocks' C++ kernels, built for AVX2 instead of this CPU (attention_variants)
    **({"ATTENTION_VARIANTS_CPU_ARCH": "x86-64-v3"} if platform.machine() == "x86_64" else {}),
}
CYCLE_FORMULA = "instructions + 10 x first-level misses + 100 x last-level misses"
COUNTED_CALLS = 5  # each case's region is counted this many times: its spread within a run
WARMUP_CALLS = 1  # uninstrumented, after the case's first call: caches and allocator settle
# counted and thrown away: the first instrumented calls run a few paths once (up to 15% more)
PRIMING_CALLS = 1
PACKAGE_HINT = "install valgrind (Debian/Ubuntu: apt-get install valgrind; Fedora: dnf install valgrind valgrind-devel)"

# set in the process that runs under valgrind: where its dumps go
DUMP_DIR_VARIABLE = "BENCH_CALLGRIND_DIR"
_EVENTS_LINE = re.compile(r"^events:\s*(.+)$", re.M)
_TOTALS_LINE = re.compile(r"^totals:\s*(.+)$", re.M)


class SimulatedInstrumentError(RuntimeError):
    """The simulated instrument cannot run here (no valgrind, no compiler, no headers)."""


@dataclass(frozen=True)
class SimulatedCounts:
    """One counted call: callgrind's events (Ir instructions; I1mr, D1mr, D1mw first-level
    misses; ILmr, DLmr, DLmw last-level misses)."""

    instructions: int
    l1_misses: int
    ll_misses: int

    @property
    def estimated_cycles(self) -> int:
        """`CYCLE_FORMULA` (KCachegrind's cycle estimate; a last-level miss also misses the
        first level, so it costs 110)."""
        return self.instructions + 10 * self.l1_misses + 100 * self.ll_misses

    @property
    def ll_bytes(self) -> int:
        """Memory traffic the simulated last-level cache sends out: its misses x line size."""
        return self.ll_misses * LINE_BYTES


def parse_dump(text: str) -> SimulatedCounts:
    """A callgrind dump's totals."""
    events, totals = _EVENTS_LINE.search(text), _TOTALS_LINE.search(text)
    if events is None or totals is None:
        raise SimulatedInstrumentError("a callgrind dump without events and totals lines")
    # callgrind leaves out trailing zeros: a missing count is 0
    values = dict(zip(events.group(1).split(), map(int, totals.group(1).split()), strict=False))

    def total(*names: str) -> int:
        return sum(values.get(name, 0) for name in names)

    return SimulatedCounts(
        instructions=total("Ir"),
        l1_misses=total("I1mr", "D1mr", "D1mw"),
        ll_misses=total("ILmr", "DLmr", "DLmw"),
    )


def valgrind_version() -> str | None:
    """`valgrind --version`, or None where valgrind is not installed."""
    path = shutil.which("valgrind")
    if path is None:
        return None
    done = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attention-bench"


def client_library() -> Path:
    """The client-request library, compiled once per source into the user's cache."""
    source = resources.files("bench.measurement").joinpath("csrc/valgrind_client.c").read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = _cache_dir() / f"valgrind_client_{digest}.so"
    if target.exists():
        return target
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SimulatedInstrumentError(
            "timing.instrument=simulated needs a C compiler for valgrind's client requests; "
            "none found (set CC, or install gcc)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    source_path = target.with_suffix(".c")
    source_path.write_bytes(source)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    done = subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", str(source_path), "-o", str(partial)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        missing = "valgrind/callgrind.h" in done.stderr
        raise SimulatedInstrumentError(
            "could not build valgrind's client requests"
            + (f": valgrind's headers are missing; {PACKAGE_HINT}" if missing else "")
            + f"\n{done.stderr.strip()}"
        )
    os.replace(partial, target)  # whole or not at all: another process may load it
    return target


def require_valgrind() -> str:
    """valgrind's version, with the client library built; a clear error naming what to install
    otherwise. Called before a simulated sweep does any work."""
    version = valgrind_version()
    if version is None:
        raise SimulatedInstrumentError(
            f"timing.instrument=simulated counts each case under valgrind, which is not "
            f"installed: {PACKAGE_HINT}; or use timing.instrument=wall"
        )
    client_library()
    return version


def instrument_facts() -> dict[str, Any]:
    """What a simulated run records in env.json: how its counts were made."""
    return {
        "instrument": "simulated",
        "valgrind": valgrind_version(),
        "tool": "callgrind, cache simulation on, instrumentation only inside each case's region",
        "caches": {
            name: {"bytes": s, "ways": w, "line_bytes": b} for name, (s, w, b) in CACHES.items()
        },
        "cpu_capability": CPU_CAPABILITY,
        "cycle_formula": CYCLE_FORMULA,
        "threads": "1 (valgrind runs threads one at a time)",
        "counted_calls": COUNTED_CALLS,
    }


def valgrind_command(python_args: list[str], dump_dir: Path) -> list[str]:
    """The command that runs `python python_args...` under callgrind, counting nothing until
    a region starts."""
    caches = [f"--{name}={s},{w},{b}" for name, (s, w, b) in CACHES.items()]
    return [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", "--cache-sim=yes", *caches,
        f"--callgrind-out-file={dump_dir / 'callgrind.out.%p'}",
        f"--log-file={dump_dir / 'valgrind.%p.log'}",
        sys.executable, *python_args,
    ]  # fmt: skip


def valgrind_environment(dump_dir: Path) -> dict[str, str]:
    """The environment of the process under valgrind: what varies between processes, pinned."""
    return {
        **os.environ,
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        **CPU_CAPABILITY,
        DUMP_DIR_VARIABLE: str(dump_dir),
    }


class RegionCounter:
    """Counts regions of this process, which runs under valgrind (`on_valgrind`)."""

    def __init__(self, dump_dir: Path):
        self.dump_dir = dump_dir
        self.lib = ctypes.CDLL(str(client_library()))
        self.lib.bench_count_stop.argtypes = [ctypes.c_char_p]
        self.dumps = 0  # callgrind numbers a process's dumps 1, 2, ...
        self.evictor = torch.zeros(CACHES["LL"][0], dtype=torch.uint8)

    def count(self, call: Callable[[], Any], calls: int = COUNTED_CALLS) -> list[SimulatedCounts]:
        """`calls` calls, each counted alone, after `WARMUP_CALLS` uninstrumented calls and
        `PRIMING_CALLS` instrumented ones that are not counted. Each call starts from empty
        simulated caches (`evict`), so its last-level misses are the data it must bring in,
        wherever the allocator put it; and the garbage collector is off, as timeit turns it
        off: a collection that one call happens to trigger is not that call's work."""
        for _ in range(WARMUP_CALLS):
            call()
        collecting = gc.isenabled()
        gc.collect()
        gc.disable()
        self.lib.bench_instrumentation_on()
        try:
            dumps = [self._count_one(call) for _ in range(PRIMING_CALLS + calls)]
        finally:
            self.lib.bench_instrumentation_off()
            if collecting:
                gc.enable()
        counted = []
        for dump in dumps:  # read once instrumentation is off: reading under it is slow
            counted.append(parse_dump(dump.read_text()))
            dump.unlink()  # the run directory keeps the counts, not the dumps
        return counted[PRIMING_CALLS:]

    def evict(self) -> None:
        """Empty the simulated caches of everything but the eviction buffer: a pass over a
        buffer the last level's size touches each of its sets as often as it has ways, and
        fills the first level likewise (least recently used goes first)."""
        self.evictor.add_(1)

    def _count_one(self, call: Callable[[], Any]) -> Path:
        """One call, from empty caches, between a zeroing and a dump; the dump's file."""
        self.evict()
        self.lib.bench_count_start()
        call()
        self.lib.bench_count_stop(b"region")
        self.dumps += 1
        return self.dump_dir / f"callgrind.out.{os.getpid()}.{self.dumps}"


def on_valgrind() -> bool:
    """This process was started by a simulated sweep under valgrind."""
    return DUMP_DIR_VARIABLE in os.environ


def region_counter() -> RegionCounter:
    """The counter of this process (it must run under valgrind)."""
    dump_dir = Path(os.environ[DUMP_DIR_VARIABLE])
    counting = RegionCounter(dump_dir)
    if not counting.lib.bench_running_on_valgrind():
        raise SimulatedInstrumentError(
            f"{DUMP_DIR_VARIABLE} is set but this process does not run under valgrind"
        )
    return counting


def median_call(counted: list[SimulatedCounts]) -> SimulatedCounts:
    """The counted call whose estimated cycles are the median."""
    return sorted(counted, key=lambda c: c.estimated_cycles)[len(counted) // 2]


def relative_spread(values: list[int]) -> float:
    """(largest - smallest) / median: how far repeated counts of one region lie apart. The
    whole range, not a quantile's: a call that brings in more memory now and then (the
    allocator's state) is as likely in the other process, so the gate's interval covers it."""
    median = float(np.median(values))
    return float((max(values) - min(values)) / median) if median else 0.0
