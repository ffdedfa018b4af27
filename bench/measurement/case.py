"""The one way a case is measured: timing paired with its reference, counts, memory, quality.

The pytest-benchmark suite and the fused benchmark call `measure_case`; the sweep runner uses
its pieces (`prepare_case`, `round_settings`, `time_round`, `finish_case`) to spread each case's
rounds over the whole sweep. Every number the suite prints is measured the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from torch import nn

from .contract import OutputContract
from .counting import Counts, count
from .memory import peak_memory
from .quality import CpuLoad, CpuLoadWindow, GpuWatch, load_flags, sample_flags
from .references import REFERENCES
from .timing import (
    Measurement,
    Rotation,
    combine,
    l2_cache_bytes,
    measure,
    mode_fn,
    plan_rotation,
    thread_count,
)


def _comma_list(value: Any) -> Any:
    """``"eager,graph"`` (the command line's form) or one value -> a list."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class TimingBudget(BaseModel):
    """How long each case is timed (see `bench.measurement.timing.measure`)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    instrument: Literal["wall", "simulated"] = Field(
        "wall",
        description="wall: time each case on the clock; simulated: count one call's "
        "instructions and simulated cache misses under valgrind (one thread, CPU only; the "
        "budget below then only sets the warm-up)",
    )
    launch: Annotated[list[Literal["eager", "graph"]], BeforeValidator(_comma_list)] = Field(
        ["eager"],
        min_length=1,
        description="eager: each call launched from Python (device time plus launch cost); "
        "graph: the calls replayed from a CUDA graph over rotated copies of the input (device "
        "time, L2 cold; CUDA only). Both: a row each, and eager minus graph is the launch cost",
    )
    warmup_s: float = Field(0.05, ge=0, description="warm-up before any sample, per round")
    min_time_s: float = Field(0.1, ge=0, description="sample at least this long (all rounds)")
    max_time_s: float = Field(1.0, gt=0, description="the case's time cap (all rounds)")
    target_ci: float = Field(0.01, gt=0, description="stop when the 95% CI is within this")
    min_samples: int = Field(10, ge=1, description="samples before the CI may stop a case")
    paired_reference: bool = Field(
        True,
        description="time each variant in alternation with a copy of its input; `bench "
        "compare` divides the pairs, which cancels the machine's drift",
    )
    rounds: int = Field(
        3,
        ge=1,
        description="the most rounds a case gets, each on a fresh copy of the input; a sweep "
        "goes through all its open cases once per round, so each case's rounds lie minutes "
        "apart and `bench compare` can treat them as independent",
    )
    min_rounds: int | None = Field(
        None,
        ge=1,
        description="rounds every case gets (at most `rounds`; unset: `rounds`); past them a "
        "sweep closes a case once its interval is within target_ci. `bench compare` tests a "
        "case with 2 rounds a side and more narrow its interval",
    )
    sweep_budget_s: float | None = Field(
        None,
        gt=0,
        description="seconds a sweep's cases may take from its first round (sweep only; unset: "
        "no limit; the roofline ceilings and kernel builds before it are not counted): "
        "after the first pass the rounds left go to the cases whose intervals are widest "
        "against target_ci (bench/sweep/schedule.py says the rule)",
    )

    @model_validator(mode="after")
    def _min_within_max(self) -> TimingBudget:
        if self.min_time_s > self.max_time_s:
            raise ValueError(
                f"min_time_s={self.min_time_s} exceeds max_time_s={self.max_time_s}; "
                "allowed: min_time_s <= max_time_s"
            )
        return self


class CompileFallbackError(RuntimeError):
    """A case asked to be compiled ran eagerly: its time would not be a compiled time."""


@dataclass
class CompileStats:
    graphs: int
    graph_breaks: int


@dataclass
class CaseMeasurement:
    """Everything measured for one case, typed: the run directory turns it into a row."""

    timing: Measurement
    counts: Counts
    peak_memory_bytes: int
    params: int
    flags: list[str] = field(default_factory=list)  # see bench.measurement.quality
    cpu_load: CpuLoad | None = None
    compile_stats: CompileStats | None = None
    rotation: Rotation | None = None  # graph launch: what kept the L2 cold


# a sweep keeps every compiled case alive at once (round after round): dynamo may hold an entry
# for each, and one past that raises rather than running eagerly unannounced
COMPILED_CASES_LIMIT = 1024


def compile_module(
    module: nn.Module, mode: str, x: torch.Tensor, backend: str = "inductor"
) -> tuple[nn.Module, CompileStats]:
    """`torch.compile(module, backend=backend, dynamic=False)`, called once, with proof that
    dynamo captured a graph.

    The compiled modules of a sweep share code objects (one `forward` per module class) and are
    each called again in every round, so dynamo's caches are never reset (a reset would make
    each kept module recompile in its next round), its limit on entries per code object is
    raised to `COMPILED_CASES_LIMIT`, and a case past that limit fails instead of silently
    running eagerly. Shapes are static, so a case's compiled time does not depend on which other
    shapes the sweep compiled before it.
    """
    import torch._dynamo.config as dynamo_config
    from torch._dynamo.utils import counters

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, COMPILED_CASES_LIMIT)
    dynamo_config.accumulated_recompile_limit = max(
        dynamo_config.accumulated_recompile_limit, COMPILED_CASES_LIMIT
    )
    dynamo_config.fail_on_recompile_limit_hit = True
    # lazy initialisation (a kernel library loaded on first use) runs eagerly, not traced
    mode_fn(mode, module, x)()
    graphs_before = int(counters["stats"]["unique_graphs"])
    breaks_before = int(sum(counters["graph_break"].values()))
    compiled = torch.compile(module, backend=backend, dynamic=False)
    mode_fn(mode, compiled, x)()
    stats = CompileStats(
        graphs=int(counters["stats"]["unique_graphs"]) - graphs_before,
        graph_breaks=int(sum(counters["graph_break"].values())) - breaks_before,
    )
    if stats.graphs == 0:
        raise CompileFallbackError(
            "torch.compile captured no graph: the module ran eagerly, so no compiled time exists"
        )
    return compiled, stats


def round_settings(budget: TimingBudget, index: int, used_s: float) -> dict[str, Any] | None:
    """`measure`'s settings for round `index` of a case that has used `used_s` of its cap, or
    None when no round may start: the cap covers all rounds, so a slow case ends with fewer
    rounds (and is flagged few_samples) rather than overrunning its budget."""
    left = budget.max_time_s - used_s
    if index >= budget.rounds or (index > 0 and left <= 0):
        return None
    share = max(left, 0.0) / (budget.rounds - index)
    return {
        "warmup_s": budget.warmup_s,
        "min_time_s": min(budget.min_time_s / budget.rounds, share),
        "max_time_s": share,
        "target_ci": budget.target_ci,
        "min_samples": max(3, -(-budget.min_samples // budget.rounds)),
    }


@dataclass
class TimedRound:
    """One round of a case: its samples, what other processes did meanwhile, how long it took."""

    timing: Measurement
    cpu_load: CpuLoad | None
    wall_s: float
    gpu_flags: list[str] = field(default_factory=list)
    rotation: Rotation | None = None  # graph launch: the input's copies the replay cycles


def time_round(
    mode: str,
    module: nn.Module | Callable,
    x: torch.Tensor,
    settings: dict[str, Any],
    *,
    threads: int | None = None,
    reference: nn.Module | None = None,
    launch: str = "eager",
    call_bytes: int | None = None,
) -> TimedRound:
    """One round on a fresh copy of `x`, each sample of `module` followed by one of `reference`
    on the same copy, with its own calibration, inside a CPU-load window. `module`'s first use
    is done (`first_call`, or an earlier round of the same case), so its warm-up makes no
    extra call. `launch="graph"` (CUDA): the calls on `plan_rotation`'s copies of `x` (for a
    call that moves `call_bytes`; default: reading x and writing its like), and the
    reference's on the same copies, each replayed from a CUDA graph."""
    # where a tensor lands in memory moves cache-sized cases by several percent: each round
    # times a fresh copy, and the rounds together average that out
    rotation = None
    if launch == "graph":
        moved = call_bytes or 2 * x.numel() * x.element_size()
        rotation = plan_rotation(moved, l2_cache_bytes(x.device))
        copies = [x.clone() for _ in range(rotation.copies)]
        timed: Any = [mode_fn(mode, module, copy) for copy in copies]
        paired: Any = None if reference is None else [mode_fn(mode, reference, c) for c in copies]
    else:
        x_round = x.clone()
        timed = mode_fn(mode, module, x_round)
        paired = None if reference is None else mode_fn(mode, reference, x_round)
    gpu = GpuWatch(x.device) if x.device.type == "cuda" else None
    used_threads = threads if threads is not None else torch.get_num_threads()
    started = time.perf_counter()
    with CpuLoadWindow(used_threads) as window:
        timing = measure(
            timed, reference=paired, device=str(x.device), threads=threads,
            first_use_done=True, **settings,
        )  # fmt: skip
    return TimedRound(
        timing, window.load, time.perf_counter() - started,
        [] if gpu is None else gpu.check(), rotation,
    )  # fmt: skip


def time_rounds(
    mode: str,
    module: nn.Module | Callable,
    x: torch.Tensor,
    *,
    budget: TimingBudget,
    threads: int | None = None,
    reference: nn.Module | None = None,
) -> list[TimedRound]:
    """Up to `budget.rounds` rounds back to back (see `round_settings` and `time_round`)."""
    rounds: list[TimedRound] = []
    while settings := round_settings(budget, len(rounds), sum(r.wall_s for r in rounds)):
        rounds.append(time_round(mode, module, x, settings, threads=threads, reference=reference))
    return rounds


@dataclass
class PreparedCase:
    """A case ready to be timed: the module to time (compiled if asked), its copy reference,
    and what is measured once rather than per round (counts, memory, parameters)."""

    timed: nn.Module | None  # None once a sweep has let it go (it rebuilds for each round)
    reference: nn.Module | None
    counts: Counts
    peak_memory_bytes: int
    params: int
    compile_stats: CompileStats | None = None


def prepare_case(
    module: nn.Module,
    x: torch.Tensor,
    *,
    mode: str,
    threads: int | None = None,
    compile: bool = False,
    paired: bool = True,
    counts_cache: dict[Any, Counts] | None = None,
    counts_key: Any = None,
    contract: OutputContract | None = None,
) -> PreparedCase:
    """Check the output against `contract` (before anything is compiled or timed), compile if
    asked, make the first call, and count and weigh the eager module."""
    params = sum(p.numel() for p in module.parameters())
    train = mode == "train"
    module.train(train)  # counts and memory of the eager module, in the timed mode
    if contract is not None:
        contract.check(module, x)
    compile_stats = None
    timed: nn.Module = module
    if compile:
        timed, compile_stats = compile_module(module, mode, x)
        module.train(train)
    if counts_cache is not None and counts_key in counts_cache:
        counts = counts_cache[counts_key]
    else:
        counts = count(module, x, backward=train)
        if counts_cache is not None:
            counts_cache[counts_key] = counts
    peak = peak_memory(module, x, backward=train)
    first_call(mode, timed, x, threads)
    reference = REFERENCES["copy"](x.shape[1]) if paired else None
    return PreparedCase(timed, reference, counts, peak, params, compile_stats)


def first_call(mode: str, module: nn.Module | Callable, x: torch.Tensor, threads: int | None):
    """First use (a kernel built by compiler subprocesses, lazy initialisation) before any
    load window opens: its work is ours, but /proc/stat would count it as a neighbour's."""
    with thread_count(threads):
        mode_fn(mode, module, x)()


def round_flags(rounds: list[TimedRound]) -> tuple[Measurement, list[str]]:
    """The rounds' samples as one measurement, and the flags of all of them."""
    timing = combine([r.timing for r in rounds])
    flags = sample_flags(timing)
    for r in rounds:
        flags += [f for f in load_flags(r.cpu_load) + r.gpu_flags if f not in flags]
    if any(r.rotation is not None and not r.rotation.cold for r in rounds):
        flags.append("warm_l2")
    return timing, flags


def finish_case(prepared: PreparedCase, rounds: list[TimedRound]) -> CaseMeasurement:
    """The case's measurement from its rounds, with the flags of all of them."""
    timing, flags = round_flags(rounds)
    loads = [r.cpu_load for r in rounds if r.cpu_load is not None]
    worst = max(loads, key=lambda load: load.other_share or 0.0, default=None)
    return CaseMeasurement(
        timing=timing,
        counts=prepared.counts,
        peak_memory_bytes=prepared.peak_memory_bytes,
        params=prepared.params,
        flags=flags,
        cpu_load=worst,
        compile_stats=prepared.compile_stats,
        rotation=next((r.rotation for r in rounds if r.rotation is not None), None),
    )


def measure_case(
    module: nn.Module,
    x: torch.Tensor,
    *,
    mode: str,
    budget: TimingBudget | None = None,
    threads: int | None = None,
    compile: bool = False,
    paired_reference: bool | None = None,
    counts_cache: dict[Any, Counts] | None = None,
    counts_key: Any = None,
    contract: OutputContract | None = None,
) -> CaseMeasurement:
    """Time, count and weigh `module` on `x` in `mode` ("infer" or "train").

    Timing follows `budget` (rounds back to back on fresh copies of `x`, each sample paired
    with a copy of the same tensor unless `paired_reference` is False), on the module compiled
    when `compile` (an eager fallback raises `CompileFallbackError`). Counts and peak memory
    are those of the eager module; `counts_cache[counts_key]` reuses counts across cases of the
    same shape. The quality flags say what could make the timing wrong (see
    `bench.measurement.quality`). With `contract`, an output that breaks it raises
    `OutputContractError` before anything is timed. A sweep spreads the rounds over the whole sweep instead, with
    the same pieces (`prepare_case`, `round_settings`, `time_round`, `finish_case`).
    """
    budget = budget or TimingBudget()
    paired = budget.paired_reference if paired_reference is None else paired_reference
    prepared = prepare_case(
        module, x, mode=mode, threads=threads, compile=compile, paired=paired,
        counts_cache=counts_cache, counts_key=counts_key, contract=contract,
    )  # fmt: skip
    rounds = time_rounds(
        mode, prepared.timed, x, budget=budget, threads=threads, reference=prepared.reference
    )
    return finish_case(prepared, rounds)
