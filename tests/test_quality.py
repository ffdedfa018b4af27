"""Quality flags: contention measured from /proc/stat, instability, too few samples, compile
fallbacks; each against a machine state made for the test."""

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import attention_variants as av
from bench.measurement import quality
from bench.measurement.case import (
    CompileFallbackError,
    TimingBudget,
    compile_module,
    measure_case,
    time_rounds,
)
from bench.measurement.quality import CpuLoadWindow, load_flags, sample_flags
from bench.measurement.timing import Measurement, combine, measure, median_ci_ranks, mode_fn
from bench.sweep.rundir import measured_fields, quality_flags, quality_text

linux_only = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs /proc/stat")


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _busy_processes(count: int, seconds: float) -> list[subprocess.Popen]:
    """`count` processes spinning for `seconds`, returned once each has started spinning: a
    slow interpreter start would otherwise leave the window it was meant to load idle."""
    code = (
        f"import time\nend = time.time() + {seconds}\nprint('spinning', flush=True)\n"
        "while time.time() < end: pass"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    for process in processes:
        assert process.stdout.readline().strip() == "spinning"
    return processes


@linux_only
def test_a_quiet_window_is_not_contended():
    with CpuLoadWindow(threads=1) as window:
        _spin(0.5)  # our own work is not someone else's
    assert window.load.other_share is not None
    assert not window.load.contended, window.load
    assert load_flags(window.load) == []


@linux_only
def test_a_busy_neighbour_on_every_cpu_is_contended():
    cpus = len(os.sched_getaffinity(0))
    neighbours = _busy_processes(cpus, seconds=3)
    try:
        with CpuLoadWindow(threads=cpus) as window:
            _spin(0.6)
    finally:
        for process in neighbours:
            process.kill()
            process.wait()
    assert window.load.contended, window.load
    assert load_flags(window.load) == ["contended"]


def _short_case_flags(rounds: int = 8) -> tuple[list[str], list]:
    """A case whose rounds last about 0.1 s each, too short for /proc/stat's ticks alone but
    together long enough for the later rounds' windows to widen to MIN_WINDOW_S, timed with
    no earlier window in reach (another test's children, waited for, are ours). Shorter in
    all, the check would rest on a few ticks: a neighbour that our two threads crowd out
    reads as less than the slack."""
    quality._recent.clear()
    budget = TimingBudget(
        warmup_s=0.002, min_time_s=0.8, max_time_s=2.0, target_ci=0.5, rounds=rounds
    )
    x = torch.randn(8, 64, 14, 14)
    timed = time_rounds("infer", av.create("eca", 64).eval(), x, budget=budget)
    assert min(r.wall_s for r in timed) < quality.MIN_WINDOW_S  # too short to check alone
    assert max(r.cpu_load.window_s for r in timed) >= quality.MIN_WINDOW_S  # widened in full
    flags = sorted({f for r in timed for f in load_flags(r.cpu_load)})
    return flags, [r.cpu_load for r in timed]


@linux_only
def test_a_short_case_beside_a_busy_process_is_contended():
    neighbour = _busy_processes(1, seconds=30)[0]
    try:
        flags, loads = _short_case_flags()
    finally:
        neighbour.kill()
        neighbour.wait()
    assert flags == ["contended"], loads
    assert any(load.window_s > 2 * load.wall_s for load in loads)  # seen through the widening


@linux_only
def test_a_short_case_on_a_quiet_machine_is_not_contended():
    flags, loads = _short_case_flags()
    assert flags == [], loads


def test_a_short_window_is_widened_back_through_earlier_readings(monkeypatch):
    """Scripted /proc/stat: a neighbour kept one of two CPUs busy from t=0; our rounds last
    10 ms each and use no CPU of their own."""
    monkeypatch.setattr(quality, "_recent", quality.deque(maxlen=512))
    monkeypatch.setattr(quality, "_usable_cpus", lambda: {0, 1})
    clock = {"t": 0.0}

    def read(cpus):
        return quality._Reading(cpus, clock["t"], busy=clock["t"], own=0.0)

    monkeypatch.setattr(quality, "_read", read)
    loads = []
    for _ in range(60):
        with CpuLoadWindow(threads=2) as window:
            clock["t"] += 0.010
        clock["t"] += 0.001  # the runner's work between rounds
        loads.append(window.load)
    assert loads[0].window_s == pytest.approx(0.010) and not loads[0].contended  # slack wins
    assert loads[-1].window_s >= quality.MIN_WINDOW_S
    assert loads[-1].window_s < quality.MIN_WINDOW_S + 0.02  # the latest reading old enough
    assert loads[-1].other_share == pytest.approx(0.5, abs=0.05)  # one CPU of two
    assert loads[-1].contended
    clock["t"] += quality.MAX_WIDENED_S + 1  # long after: nothing to widen through
    with CpuLoadWindow(threads=2) as window:
        clock["t"] += 0.010
    assert window.load.window_s == pytest.approx(0.010)


def test_without_proc_stat_contention_is_unchecked_not_ok(monkeypatch, tmp_path):
    monkeypatch.setattr(quality, "PROC_STAT", tmp_path / "absent")
    with CpuLoadWindow(threads=1) as window:
        pass
    assert window.load.other_share is None
    assert load_flags(window.load) == ["contention_unchecked"]


def _measurement(samples):
    return Measurement(list(samples), block_size=1)


def test_few_samples_get_no_interval_and_a_flag():
    few = _measurement([1.0, 1.1, 0.9, 1.0, 1.05])
    assert all(math.isnan(v) for v in few.ci)
    assert sample_flags(few) == ["few_samples"]
    with pytest.raises(ValueError, match="needs n >= 6"):
        median_ci_ranks(5)
    six = _measurement([1.0, 1.001, 0.999, 1.0, 1.0005, 0.9995])
    assert six.ci == (0.999, 1.001) and sample_flags(six) == []


def test_a_wide_spread_is_unstable():
    steady = _measurement([1.0 + 0.001 * (i % 5) for i in range(50)])
    bimodal = _measurement([1.0, 1.5] * 25)  # e.g. a thread descheduled in half the samples
    wide = _measurement([1.0, 1.3, 0.8, 1.6, 0.9, 1.2, 0.7, 1.4])  # the cap came first
    assert sample_flags(steady) == []
    assert sample_flags(bimodal) == ["unstable"]  # its median could be 1.0 or 1.5
    assert sample_flags(wide) == ["unstable"]


def test_quality_cells_keep_a_fixed_order_and_read_back_as_flags():
    assert quality_text([]) == "ok"
    assert quality_text(["unstable", "contended"]) == "contended;unstable"
    assert quality_flags("contended;unstable") == ("contended", "unstable")
    assert quality_flags("ok") == () and quality_flags(None) == ()


def test_the_first_call_does_not_spoil_calibration():
    calls = []

    def slow_first_call():
        if not calls:
            time.sleep(0.2)  # e.g. a kernel built on first use
        calls.append(1)

    m = measure(slow_first_call, warmup_s=0.01, min_time_s=0.01, max_time_s=0.05)
    assert m.block_size > 10  # from the fast calls' cost, not the 0.2 s of the first


def test_every_round_keeps_its_own_block_size():
    rounds = [Measurement([1.0] * 3, block_size=b) for b in (4, 9)]
    combined = combine(rounds)
    assert combined.block_sizes == [4, 4, 4, 9, 9, 9]
    assert combined.rounds == [0, 0, 0, 1, 1, 1]


class _Slow(torch.nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        _spin(self.seconds)
        return x


def test_a_round_with_few_samples_does_not_end_the_case():
    # 5 ms calls: each round ends with a handful of samples, and the next one still runs
    budget = TimingBudget(warmup_s=0, min_time_s=0, max_time_s=0.3, target_ci=1e-9, rounds=3)
    m = combine(
        [r.timing for r in time_rounds("infer", _Slow(0.005), torch.zeros(1), budget=budget)]
    )
    assert sorted(set(m.rounds)) == [0, 1, 2]


def test_a_slow_case_stops_at_its_time_cap():
    budget = TimingBudget(warmup_s=0, min_time_s=0, max_time_s=0.03, rounds=3)
    started = time.perf_counter()
    m = combine(
        [r.timing for r in time_rounds("infer", _Slow(0.02), torch.zeros(1), budget=budget)]
    )
    assert set(m.rounds) == {0}  # the first round used the cap: no second starts
    assert time.perf_counter() - started < 0.5
    assert sample_flags(m) == ["few_samples"]


def test_measure_case_pairs_every_sample_and_reports_quality():
    module = av.create("se", 16)
    x = torch.randn(2, 16, 8, 8)
    budget = TimingBudget(warmup_s=0.01, min_time_s=0.02, max_time_s=0.1, rounds=2)
    measured = measure_case(module, x, mode="train", budget=budget)
    timing = measured.timing
    assert len(timing.reference_samples_s) == timing.n and set(timing.rounds) == {0, 1}
    assert set(measured.flags) <= set(quality.FLAGS)
    row = measured_fields(measured, batch=2)
    assert row["params"] == sum(p.numel() for p in module.parameters())
    assert row["flops"] > 0 and row["rounds"] == 2
    assert row["quality"] == quality_text(measured.flags)
    unpaired = measure_case(module, x, mode="infer", budget=budget, paired_reference=False)
    assert unpaired.timing.reference_samples_s is None


class _Uncapturable(torch.nn.Module):
    @torch._dynamo.disable
    def forward(self, x):
        return x * 2


def test_a_compiled_case_that_runs_eagerly_is_an_error():
    with pytest.raises(CompileFallbackError, match="ran eagerly"):
        compile_module(_Uncapturable(), "infer", torch.randn(2, 3), backend="eager")


class _CountingBackend:
    """A dynamo backend that counts the graphs it compiles and the calls each compiled graph
    gets: a kept module that ran its compiled graph again adds a call and no graph."""

    def __init__(self):
        self.graphs = 0
        self.calls = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1

        def run(*args):
            self.calls += 1
            return graph_module.forward(*args)

        return run


def test_compiled_modules_kept_through_a_sweep_run_compiled_in_every_round():
    # 11 modules of one class: past dynamo's default limit of 8 entries per code object, and
    # each called again after all were compiled, as a sweep's later rounds call them
    backend = _CountingBackend()
    kept = []
    for channels in range(16, 16 + 8 * 11, 8):
        x = torch.randn(2, channels, 4, 4)
        compiled, stats = compile_module(
            av.create("se", channels, reduction=8), "infer", x, backend
        )
        assert stats.graphs >= 1 and stats.graph_breaks == 0
        kept.append((compiled, x))
    graphs = backend.graphs
    for _ in range(2):  # two later rounds
        for compiled, x in kept:
            calls = backend.calls
            mode_fn("infer", compiled, x)()
            assert backend.calls == calls + 1, "the kept module ran eagerly"
    assert backend.graphs == graphs, "a kept module was compiled again"


class _FakeNvml:
    """Stands in for pynvml: the clock-throttle reasons and compute processes NVML reports."""

    def __init__(self, reasons, pids):
        self.reasons, self.pids = reasons, pids

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, index):
        return f"gpu{index}"

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle):
        return self.reasons

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [type("Process", (), {"pid": pid})() for pid in self.pids]


@pytest.mark.parametrize(
    ("reasons", "pids", "flags"),
    [
        (0x1, [os.getpid()], []),  # idle clocks and only us: nothing to say
        (0x4, [os.getpid()], ["gpu_throttled"]),  # e.g. a software power cap
        (0x0, [os.getpid(), 1], ["gpu_shared"]),
    ],
)
def test_gpu_watch_reads_throttling_and_neighbours_from_nvml(monkeypatch, reasons, pids, flags):
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml(reasons, pids))
    assert quality.GpuWatch(torch.device("cuda", 0)).check() == flags


def test_every_flag_has_a_hint():
    assert set(quality.FLAG_HINTS) == set(quality.FLAGS)


class _BuildsOnFirstUse(torch.nn.Module):
    """Like the fused CPU kernels: the first call compiles in a subprocess that keeps a CPU busy."""

    def __init__(self):
        super().__init__()
        self.built = False

    def forward(self, x):
        if not self.built:
            code = "import time\nend = time.time() + 0.5\nwhile time.time() < end: pass"
            subprocess.run([sys.executable, "-c", code], check=True)
            self.built = True
        return x * 2


@linux_only
def test_a_build_on_first_use_is_not_read_as_a_neighbour():
    budget = TimingBudget(warmup_s=0.01, min_time_s=0.2, max_time_s=0.3, rounds=1)
    measured = measure_case(_BuildsOnFirstUse(), torch.randn(2, 8, 4, 4), mode="infer",
                            budget=budget, paired_reference=False)  # fmt: skip
    assert "contended" not in measured.flags, measured.cpu_load
