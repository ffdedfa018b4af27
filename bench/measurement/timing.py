"""Latency that can be trusted: warm-up, blocked samples, adaptive stop, every sample kept.

CPU: `time.perf_counter_ns` around blocks of calls, each block long enough that reading the clock
costs under 0.1% of it. CUDA: CUDA events around each sample, a synchronize, and an L2 flush
(writing a buffer larger than the L2) between samples outside the timed region, as
`triton.testing.do_bench` does; or calls on rotated copies of the input replayed from one CUDA
graph (device time without launches; the copies keep the L2 cold, since a graph cannot flush).

``python -m bench check timing`` checks it against ``torch.utils.benchmark``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

CONFIDENCE = 0.95
# below 6 samples even [min, max] covers the median with less than 95% (5 samples: 93.75%)
MIN_SAMPLES_FOR_CI = 6


def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int]:
    """0-based ranks (lo, hi) of sorted samples that bracket the median with `confidence`.

    Distribution-free: the number of samples below the true median is Binomial(n, 1/2), so
    [x_(lo), x_(hi)] covers it with probability sum_{i=lo+1}^{hi} C(n, i) / 2^n. Needs
    n >= MIN_SAMPLES_FOR_CI at 95%: fewer samples cannot give an interval that covers that often.
    """
    if n < MIN_SAMPLES_FOR_CI:
        raise ValueError(
            f"n={n}: a {confidence:.0%} interval of the median needs n >= {MIN_SAMPLES_FOR_CI}"
        )
    alpha = (1 - confidence) / 2
    # largest lo with P(Binomial <= lo) <= alpha; exact for moderate n, normal beyond
    if n <= 1000:
        cumulative, lo = 0.0, -1
        for i in range(n + 1):
            cumulative += math.comb(n, i) / 2.0**n
            if cumulative > alpha:
                break
            lo = i
    else:
        z = statistics.NormalDist().inv_cdf(1 - alpha)
        lo = math.floor(n / 2 - z * math.sqrt(n) / 2) - 1
    lo = max(lo, 0)
    return lo, n - 1 - lo


@dataclass
class Measurement:
    """Every sample (seconds per call) of one timed callable, and its statistics."""

    samples_s: list[float]
    block_size: int  # calls per sample; each sample is the block's time / block_size
    device: str = "cpu"
    threads: int | None = None
    warmup_calls: int = 0
    stop_reason: str = ""
    reference_samples_s: list[float] | None = None  # paired samples of a reference, if any
    # per sample, when rounds with their own calibration were combined
    sample_block_sizes: list[int] | None = None
    sample_rounds: list[int] | None = None
    sampling_s: float = 0.0  # wall seconds of the sampling loop, paired reference included

    @property
    def block_sizes(self) -> list[int]:
        """Calls per sample, sample by sample."""
        return self.sample_block_sizes or [self.block_size] * self.n

    @property
    def rounds(self) -> list[int]:
        """The round (0, 1, ...) each sample was taken in."""
        return self.sample_rounds or [0] * self.n

    @property
    def n(self) -> int:
        return len(self.samples_s)

    @property
    def median(self) -> float:
        return statistics.median(self.samples_s)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples_s)

    @property
    def std(self) -> float:
        return statistics.stdev(self.samples_s) if self.n > 1 else 0.0

    @property
    def iqr(self) -> float:
        if self.n < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples_s, n=4, method="inclusive")
        return q3 - q1

    @property
    def ci(self) -> tuple[float, float]:
        """95% confidence interval of the median, from order statistics; NaN for n < 6."""
        if self.n < MIN_SAMPLES_FOR_CI:
            return math.nan, math.nan
        ordered = sorted(self.samples_s)
        lo, hi = median_ci_ranks(self.n)
        return ordered[lo], ordered[hi]

    @property
    def ci_relative_half_width(self) -> float:
        low, high = self.ci
        return (high - low) / 2 / self.median

    def summary(self) -> str:
        low, high = self.ci
        interval = (
            f"95% CI {low * 1e6:.2f}-{high * 1e6:.2f}" if self.n >= MIN_SAMPLES_FOR_CI else "no CI"
        )
        return (
            f"median {self.median * 1e6:.2f} us [{interval}], "
            f"IQR {self.iqr * 1e6:.2f} us, n={self.n} x {self.block_size} calls ({self.stop_reason})"
        )

    def __repr__(self) -> str:
        return f"Measurement({self.summary()})"


def combine(measurements: Sequence[Measurement]) -> Measurement:
    """One Measurement holding every sample of several (e.g. rounds on fresh inputs)."""
    first = measurements[0]
    samples = [s for m in measurements for s in m.samples_s]
    references = None
    if all(m.reference_samples_s is not None for m in measurements):
        references = [s for m in measurements for s in m.reference_samples_s]
    reasons = sorted({m.stop_reason for m in measurements})
    block_sizes = [b for m in measurements for b in m.block_sizes]
    return Measurement(
        samples,
        int(statistics.median_low(block_sizes)),
        first.device,
        first.threads,
        sum(m.warmup_calls for m in measurements),
        "+".join(reasons),
        references,
        block_sizes,
        [r for r, m in enumerate(measurements) for _ in m.samples_s],
        sum(m.sampling_s for m in measurements),
    )


@contextmanager
def thread_count(threads: int | None) -> Iterator[int]:
    """Run with `threads` intra-op threads (None: leave as is), restoring the old count after."""
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads!r} is invalid; allowed: an integer >= 1")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _stop_reason(
    samples: list[float],
    started: float,
    *,
    min_samples: int,
    max_samples: int,
    target_ci: float,
    min_time_s: float,
    max_time_s: float,
) -> str:
    n = len(samples)
    elapsed = time.perf_counter() - started
    if n >= max_samples:
        return "max_samples"
    if elapsed >= max_time_s and n >= min(min_samples, 3):
        return "time_cap"
    # a CI from a short burst of samples misses the machine's slower drift: sample a while first
    if n >= max(min_samples, MIN_SAMPLES_FOR_CI) and elapsed >= min_time_s:
        ordered = sorted(samples)
        lo, hi = median_ci_ranks(n)
        median = statistics.median(ordered)
        if median > 0 and (ordered[hi] - ordered[lo]) / 2 / median <= target_ci:
            return "ci_target"
    return ""


def _timer_overhead_ns() -> float:
    """Median cost of one pair of perf_counter_ns reads."""
    reads = []
    for _ in range(200):
        start = time.perf_counter_ns()
        reads.append(time.perf_counter_ns() - start)
    return float(statistics.median(reads))


def _calibrate_block_size(
    fn: Callable[[], Any], per_call_ns: float, min_block_s: float
) -> tuple[int, int]:
    """Calls per block so that a block lasts min_block_s and 1000x a clock read; and the
    number of calls the calibration made."""
    min_block_ns = max(1000 * _timer_overhead_ns(), min_block_s * 1e9)
    if per_call_ns > 10 * min_block_ns:
        return 1, 0  # one call is a long block even if the estimate is off by 10x
    block_size = max(1, math.ceil(min_block_ns / max(per_call_ns, 1.0)))
    calls = 0
    for _ in range(5):  # the warm-up's estimate includes its own loop: check on a real block
        start = time.perf_counter_ns()
        for _ in range(block_size):
            fn()
        block_ns = time.perf_counter_ns() - start
        calls += block_size
        if block_ns >= min_block_ns:
            break
        block_size = math.ceil(block_size * 1.2 * min_block_ns / max(block_ns, 1))
    return block_size, calls


def _warm_up(
    fn: Callable[[], Any], warmup_s: float, sync: Callable[[], None], first_use_done: bool
) -> tuple[int, float]:
    """Run `fn` for `warmup_s` (at least once); returns (calls, nanoseconds per call).

    Unless `first_use_done`, an extra first call is left out of the estimate: compilation or a
    kernel build on first use would make a fast call look slow and give blocks of one call.
    Once that cost is paid, a call longer than `warmup_s` is its own warm-up and estimate.
    """
    extra = 0
    if not first_use_done:
        fn()
        sync()
        extra = 1
    calls, start = 0, time.perf_counter_ns()
    while calls < 1 or time.perf_counter_ns() - start < warmup_s * 1e9:
        fn()
        calls += 1
    sync()
    return calls + extra, (time.perf_counter_ns() - start) / calls


class _CpuTimer:
    """Times `fn` in blocks sized so that reading the clock costs under 0.1% of a block."""

    def __init__(
        self, fn, *, warmup_s: float, block_size: int | None, min_block_s: float,
        first_use_done: bool,
    ):  # fmt: skip
        self.fn = fn
        self.warmup_calls, per_call_ns = _warm_up(fn, warmup_s, lambda: None, first_use_done)
        if block_size is None:
            block_size, calibration_calls = _calibrate_block_size(fn, per_call_ns, min_block_s)
            self.warmup_calls += calibration_calls
        self.block_size = block_size
        self._calls = range(block_size)

    def sample(self) -> float:
        fn, begin = self.fn, time.perf_counter_ns()
        for _ in self._calls:
            fn()
        return (time.perf_counter_ns() - begin) / self.block_size / 1e9


def l2_cache_bytes(device: torch.device) -> int:
    """The device's L2 size (64 MiB where the driver does not say)."""
    return int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 2**26)


def _l2_flush_buffer(device: torch.device) -> torch.Tensor:
    """A buffer twice the L2's size: zeroing it evicts whatever the last sample left there."""
    return torch.empty(2 * l2_cache_bytes(device) // 4, dtype=torch.int32, device=device)


class _CudaTimer:
    """Times one call between CUDA events, after an L2 flush outside the timed region."""

    def __init__(
        self, fn, device, *, warmup_s: float, l2_flush: bool, first_use_done: bool,
    ):  # fmt: skip
        sync = lambda: torch.cuda.synchronize(device)  # noqa: E731
        sync()
        self.warmup_calls, _ = _warm_up(fn, warmup_s, sync, first_use_done)
        self.fn = fn
        self.block_size = 1
        self.flush = _l2_flush_buffer(device) if l2_flush else None
        self.begin = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def sample(self) -> float:
        if self.flush is not None:
            self.flush.zero_()  # evicts the L2, outside the timed region
        self.begin.record()
        self.fn()
        self.end.record()
        self.end.synchronize()
        return self.begin.elapsed_time(self.end) / 1e3 / self.block_size


# ---- CUDA-graph replay with a cold L2 ----------------------------------------------------------

# a replayed graph cannot flush the L2 between its calls, so its calls read rotated copies of
# the input (as flashinfer's bench_gpu_time does), enough that at least this many L2s of
# traffic pass between two reads of the same copy: each copy has left the L2 by then
L2_COLD_FACTOR = 5
MAX_ROTATION_COPIES = 512  # a tiny call under a large L2 stays warm (flagged warm_l2)


@dataclass(frozen=True)
class Rotation:
    """How many copies of a case's input one replayed graph cycles through, the bytes one call
    moves (the dispatcher counter's), and whether the traffic between two reads of a copy
    reaches `L2_COLD_FACTOR` L2s."""

    copies: int
    call_bytes: int
    l2_bytes: int

    @property
    def rotated_bytes(self) -> int:
        """The traffic of one cycle through the copies: what passes between two reads of one."""
        return self.copies * self.call_bytes

    @property
    def cold(self) -> bool:
        return self.rotated_bytes >= L2_COLD_FACTOR * self.l2_bytes


def plan_rotation(
    call_bytes: int, l2_bytes: int, max_copies: int = MAX_ROTATION_COPIES
) -> Rotation:
    needed = -(-L2_COLD_FACTOR * l2_bytes // max(call_bytes, 1))
    return Rotation(max(1, min(needed, max_copies)), call_bytes, l2_bytes)


class _CudaGraphTimer(_CudaTimer):
    """Captures `calls` (one per rotated input) into one CUDA graph; a sample is one replay's
    time between CUDA events over the number of calls: device time without launch cost."""

    def __init__(self, calls: Sequence[Callable[[], Any]], device, *, warmup_s: float):
        sync = lambda: torch.cuda.synchronize(device)  # noqa: E731
        sync()
        # warm up on a side stream, as CUDA-graph capture asks (lazy init, autograd streams)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            self.warmup_calls, _ = _warm_up(lambda: [call() for call in calls], warmup_s, sync,
                                            True)  # fmt: skip
        torch.cuda.current_stream(device).wait_stream(side)
        sync()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = [call() for call in calls]  # kept: the graph's memory stays valid
        self.graph.replay()
        sync()
        self.fn, self.block_size, self.flush = self.graph.replay, len(calls), None
        self.begin = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)


def measure(
    fn: Callable[[], Any] | Sequence[Callable[[], Any]],
    *,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    warmup_s: float = 0.05,
    min_samples: int = 10,
    max_samples: int = 10_000,
    target_ci: float = 0.01,
    min_time_s: float = 0.1,
    max_time_s: float = 1.0,
    block_size: int | None = None,
    min_block_s: float = 1e-4,
    l2_flush: bool = True,
    reference: Callable[[], Any] | Sequence[Callable[[], Any]] | None = None,
    first_use_done: bool = False,
) -> Measurement:
    """Time `fn()` for at least `min_time_s`, then until the median's 95% CI half-width is within
    `target_ci` (relative) or `max_time_s` has passed. Warm-up (compilation, autotuning) happens
    before any sample.

    CPU samples time blocks of `block_size` calls (chosen so a block lasts at least
    `min_block_s` and 1000x the clock's read cost); CUDA samples time one call each between
    CUDA events, after an L2 flush when `l2_flush`. A list of calls (CUDA only; each on its own
    copy of the input, see `plan_rotation`) is captured into one CUDA graph and replayed: a
    sample is the replay's time over the number of calls, the device's time without launches.

    With `reference` (e.g. a plain copy of the same tensor), each sample of `fn` is followed by
    one of `reference`: the pairs see the same moment of the machine, so their ratio cancels
    the drift that separate runs cannot (`Measurement.reference_samples_s`).

    `first_use_done`: `fn` (and `reference`) ran before, so no first-use cost (compilation, a
    kernel build) is left to keep out of the warm-up's estimate of a call, and a slow call
    needs no extra one.
    """
    device = torch.device(device)
    if not (target_ci > 0 and 0 <= min_time_s <= max_time_s and 1 <= min_samples <= max_samples):
        raise ValueError(
            "measure: need target_ci > 0, 0 <= min_time_s <= max_time_s and "
            f"1 <= min_samples <= max_samples; got target_ci={target_ci}, "
            f"min_time_s={min_time_s}, max_time_s={max_time_s}, "
            f"min_samples={min_samples}, max_samples={max_samples}"
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"measure: device={str(device)!r} is not supported; allowed: cpu, cuda")
    if not callable(fn) and device.type != "cuda":
        raise ValueError(
            f"measure: a list of calls is replayed from a CUDA graph; device={str(device)!r} "
            "has none (allowed: cuda)"
        )

    def timer(f):
        if not callable(f):
            return _CudaGraphTimer(f, device, warmup_s=warmup_s)
        if device.type == "cuda":
            return _CudaTimer(
                f, device, warmup_s=warmup_s, l2_flush=l2_flush, first_use_done=first_use_done
            )
        return _CpuTimer(
            f, warmup_s=warmup_s, block_size=block_size, min_block_s=min_block_s,
            first_use_done=first_use_done,
        )  # fmt: skip

    with thread_count(threads) as used_threads:
        main = timer(fn)
        paired = None if reference is None else timer(reference)
        samples: list[float] = []
        reference_samples: list[float] = []
        started = time.perf_counter()
        while True:
            samples.append(main.sample())
            if paired is not None:
                reference_samples.append(paired.sample())
            reason = _stop_reason(
                samples,
                started,
                min_samples=min_samples,
                max_samples=max_samples,
                target_ci=target_ci,
                min_time_s=min_time_s,
                max_time_s=max_time_s,
            )
            if reason:
                break
        sampling_s = time.perf_counter() - started
    measurement = Measurement(
        samples,
        main.block_size,
        str(device),
        used_threads,
        main.warmup_calls,
        reason,
        sampling_s=sampling_s,
    )
    if paired is not None:
        measurement.reference_samples_s = reference_samples
    return measurement


# ---- the two modes a sweep times -----------------------------------------------------------


def inference_fn(module: nn.Module, *inputs: torch.Tensor) -> Callable[[], Any]:
    """A call of `module(*inputs)` under `torch.inference_mode` (module in eval mode).

    Timed: the forward pass only. Not timed: building the module and inputs.
    """
    module.eval()

    def run():
        with torch.inference_mode():
            return module(*inputs)

    return run


def training_step_fn(module: nn.Module, *inputs: torch.Tensor) -> Callable[[], None]:
    """One training step of `module` as it runs inside a network (module in train mode).

    Timed: forward, backward from a fixed upstream gradient (to the inputs and the parameters),
    and dropping the gradients (`set_to_none`). Not timed: making the inputs and the upstream
    gradient, the loss and the optimiser step (they belong to the network, not the block).
    """
    module.train()
    leaves = [x.detach().requires_grad_(x.is_floating_point()) for x in inputs]
    with torch.no_grad():
        probe = module(*leaves)
    upstream = torch.randn_like(probe)

    def run():
        for x in leaves:
            x.grad = None
        module.zero_grad(set_to_none=True)
        module(*leaves).backward(upstream)

    return run


def mode_fn(mode: str, module: nn.Module, *inputs: torch.Tensor) -> Callable[[], Any]:
    """`inference_fn` for mode "infer", `training_step_fn` for mode "train"."""
    modes = {"infer": inference_fn, "train": training_step_fn}
    if mode not in modes:
        raise ValueError(f"mode={mode!r} is invalid; allowed: {', '.join(modes)}")
    return modes[mode](module, *inputs)
