"""How far a measurement can be trusted: flags for contention, instability and too few samples.

A row's `quality` is ``ok`` or its flags joined by ``;``:

- ``contended``: other processes used the CPUs this process may run on while the case was timed.
  From ``/proc/stat``: the busy time (user, nice, system, irq, softirq, steal) of those CPUs over
  the checked window, minus this process's own CPU time (and its finished children's, such as a
  compiler it waited for), is more than CONTENDED_SHARE of the window's wall time x the threads
  in use. Steal time (a hypervisor running someone else) counts. ``/proc/stat`` counts in
  ticks (10 ms), so a round shorter than MIN_WINDOW_S is checked over a window widened back to
  MIN_WINDOW_S through the readings of the rounds timed before it in this process (a sweep's
  cases run back to back): a busy neighbour is seen beside a 10 ms round too, and a
  neighbour that ran just before the round flags it as well.
- ``contention_unchecked``: ``/proc/stat`` cannot be read (not Linux): contention is unknown,
  not absent.
- ``unstable``: the samples spread beyond what the stop rule allows: the stop rule aims at a
  95% CI of the median within 1% of it, and at the time cap the interval still reaches further
  than UNSTABLE_CI of the median on either side. Such a median cannot resolve a 10% change.
- ``few_samples``: fewer than MIN_SAMPLES_FOR_CI samples, too few for a 95% interval of the
  median from order statistics; the row's CI columns are then empty.
- ``gpu_throttled``, ``gpu_shared`` (CUDA, when NVML is installed): the clocks were held down
  for a reason other than idling, or another process had the GPU while the case was timed.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import torch

from .timing import MIN_SAMPLES_FOR_CI, Measurement

CONTENDED_SHARE = 0.10
MIN_WINDOW_S = 0.5  # against 2 ticks of slack per CPU, a neighbour on one CPU reads as >= 30%
MAX_WIDENED_S = 5.0  # an older reading would dilute a neighbour over minutes
UNSTABLE_CI = 0.10
FLAGS = (
    "contended",
    "contention_unchecked",
    "unstable",
    "few_samples",
    "gpu_throttled",
    "gpu_shared",
    "warm_l2",
)
# the machine, not the samples, was off: no statistic can correct for these
MACHINE_FLAGS = ("contended", "contention_unchecked", "gpu_throttled", "gpu_shared")
FLAG_HINTS = {  # what a flag means for the number, and what to do about it
    "contended": "other processes used the CPUs while they were timed; rerun on a quiet machine",
    "contention_unchecked": "no /proc/stat here, so contention could not be checked",
    "unstable": "the 95% CI of the median is wider than +-10%; give the cases more time "
    "(bench run --max-time 2, or timing: {max_time_s: 2.0} in a spec file)",
    "few_samples": "fewer than 6 samples, so no CI; give the cases more time (bench run "
    "--max-time 2, or timing: {max_time_s: 2.0} in a spec file)",
    "gpu_throttled": "the GPU's clocks were held down (power, heat); let it cool and rerun",
    "gpu_shared": "another process used the GPU; rerun with the GPU to yourself",
    "warm_l2": "graph-replayed, its calls move so little that even the most copies of its "
    "input (bench.measurement.timing.MAX_ROTATION_COPIES) leave under 5 L2s of traffic "
    "between two reads of one: its time may be the L2's",
}
PROC_STAT = Path("/proc/stat")
# /proc/stat's cpuN fields: user nice system idle iowait irq softirq steal guest guest_nice
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


def _busy_cpu_seconds(cpus: set[int]) -> float | None:
    """Busy seconds of `cpus` since boot, or None where /proc/stat is not there."""
    try:
        lines = PROC_STAT.read_text().splitlines()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            busy += sum(int(fields[i]) for i in _BUSY_FIELDS if i < len(fields))
    return busy / ticks


def _usable_cpus() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


@dataclass
class CpuLoad:
    """Other processes' CPU use over a window, as a share of wall time x threads in use."""

    other_share: float | None  # None: could not be measured
    wall_s: float  # the timed stretch
    threads: int
    window_s: float = float("nan")  # the stretch checked: wall_s, or widened to MIN_WINDOW_S

    @property
    def contended(self) -> bool:
        return self.other_share is not None and self.other_share > CONTENDED_SHARE


@dataclass(frozen=True)
class _Reading:
    """The CPUs' busy seconds and this process's own at one instant."""

    cpus: frozenset[int]
    wall: float
    busy: float | None
    own: float


def _read(cpus: frozenset[int]) -> _Reading:
    times = os.times()  # children's time: compilers this process started and waited for
    own = time.process_time() + times.children_user + times.children_system
    return _Reading(cpus, time.perf_counter(), _busy_cpu_seconds(set(cpus)), own)


# the readings of this process's recent windows, to widen a short one back through them
_recent: deque[_Reading] = deque(maxlen=512)


def _widened_start(start: _Reading, end: _Reading) -> _Reading:
    """The latest recent reading at least MIN_WINDOW_S before `end` (the earliest within
    MAX_WIDENED_S if none is that old), or `start` when the window itself is long enough."""
    if end.wall - start.wall >= MIN_WINDOW_S:
        return start
    chosen = start
    for reading in reversed(_recent):
        if end.wall - reading.wall > MAX_WIDENED_S:
            break
        if reading.cpus != start.cpus or reading.busy is None or reading.wall > start.wall:
            continue
        chosen = reading
        if end.wall - reading.wall >= MIN_WINDOW_S:
            break
    return chosen


class CpuLoadWindow:
    """Brackets a timed stretch: ``with CpuLoadWindow(threads) as window: ...; window.load``."""

    def __init__(self, threads: int):
        self.threads = max(1, threads)
        self.cpus = frozenset(_usable_cpus())
        self.load: CpuLoad | None = None

    def __enter__(self) -> CpuLoadWindow:
        self._start = _read(self.cpus)
        return self

    def __exit__(self, *exc) -> None:
        end = _read(self.cpus)
        wall = end.wall - self._start.wall
        start = _widened_start(self._start, end)
        _recent.extend((self._start, end))
        share, window = None, end.wall - start.wall
        if start.busy is not None and end.busy is not None and window > 0:
            # /proc/stat counts in ticks: each CPU's count can be off by a tick at either end,
            # which a short window would otherwise read as another process's work
            slack = 2 * len(self.cpus) / os.sysconf("SC_CLK_TCK")
            other = max(0.0, (end.busy - start.busy) - (end.own - start.own) - slack)
            share = other / (window * self.threads)
        self.load = CpuLoad(share, wall, self.threads, window)


def sample_flags(measurement: Measurement) -> list[str]:
    """Flags that come from the samples alone: few_samples, unstable."""
    if measurement.n < MIN_SAMPLES_FOR_CI:
        return ["few_samples"]
    median = measurement.median
    if median <= 0:
        return ["unstable"]
    low, high = measurement.ci
    if max(median - low, high - median) / median > UNSTABLE_CI:
        return ["unstable"]
    return []


def load_flags(load: CpuLoad | None) -> list[str]:
    if load is None or load.other_share is None:
        return ["contention_unchecked"]
    return ["contended"] if load.contended else []


class GpuWatch:
    """Throttling and other processes on a CUDA device over a window, where NVML can tell."""

    IDLE_REASONS = 0x1  # nvmlClocksThrottleReasonGpuIdle: clocks down because nothing ran

    def __init__(self, device: torch.device):
        self.flags: list[str] = []
        self.handle = None
        try:
            import pynvml  # optional: installed with the CUDA build's nvidia-ml-py

            pynvml.nvmlInit()
            index = device.index if device.index is not None else torch.cuda.current_device()
            self.nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception:  # no NVML: nothing to add, and no flag claims otherwise
            self.handle = None

    def check(self) -> list[str]:
        if self.handle is None:
            return []
        flags = []
        try:
            reasons = self.nvml.nvmlDeviceGetCurrentClocksThrottleReasons(self.handle)
            if reasons & ~self.IDLE_REASONS:
                flags.append("gpu_throttled")
            others = [
                p
                for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
                if p.pid != os.getpid()
            ]
            if others:
                flags.append("gpu_shared")
        except Exception:
            return []
        return flags
