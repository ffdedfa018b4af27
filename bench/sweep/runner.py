"""Runs the cases of a sweep, one fresh seeded module each, and records a row per case.

The sweep is gone through once per timing round: each case's rounds lie a whole pass apart, so
a disturbance of the machine that passes touches one round of a case, not all of them. A case's
row (and its samples) is written when its last round is timed. A case that fails is a row with
status `oom` or `error` and the sweep goes on; Ctrl-C writes the rows of cases timed so far (with
the rounds they have), and ``--resume RUN_DIR`` runs only the cases not yet recorded (a case
whose process died is recorded as `crashed` first, so a resume goes past it; cases between
their rounds when it died are timed again from the start).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import attention_variants as av
from attention_variants.checks import ChannelsUnsupported

from ..measurement.case import (
    CaseMeasurement,
    PreparedCase,
    TimedRound,
    finish_case,
    prepare_case,
    time_round,
)
from ..measurement.ceilings import measure_ceilings
from ..measurement.counting import Counts
from ..measurement.environment import load_average, seed_everything
from ..measurement.profiling import profile_case, trace_name
from ..measurement.quality import FLAG_HINTS, FLAGS
from ..measurement.simulated import (
    RegionCounter,
    instrument_facts,
    on_valgrind,
    region_counter,
    require_valgrind,
    valgrind_command,
    valgrind_environment,
)
from ..measurement.timing import combine, mode_fn
from .cases import Case, build_module, case_label, output_contract
from .plan import SweepRun, start_run
from .progress import progress
from .resume import open_resumed, prepare_resume
from .rundir import (
    RunDirectory,
    measured_fields,
    quality_warnings,
    read_results,
    result_row,
    simulated_fields,
    utc_now,
)
from .schedule import CLOSED_AS, RoundScheduler
from .shards import Shard
from .spec import SweepSpec

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class RunSummary:
    run_dir: Path
    statuses: Counter = field(default_factory=Counter)
    skipped_as_recorded: int = 0
    interrupted: bool = False
    elapsed_s: float = 0.0
    flags: Counter = field(default_factory=Counter)  # quality flag -> rows carrying it
    flagged_rows: int = 0
    closed: Counter = field(default_factory=Counter)  # why cases stopped taking rounds
    failures: list[tuple[str, str]] = field(default_factory=list)  # (case label, first line)

    def count_flags(self, flags: list[str]) -> None:
        if flags:
            self.flagged_rows += 1
            self.flags.update(flags)

    @property
    def failed(self) -> int:
        return self.statuses["error"] + self.statuses["oom"] + self.statuses["crashed"]

    @property
    def exit_code(self) -> int:
        """0: every case ran (or was skipped as unsupported); 1: some failed; 130: interrupted."""
        if self.interrupted:
            return 130
        return 1 if self.failed else 0

    def line(self) -> str:
        counts = ", ".join(f"{self.statuses[s]} {s}" for s in ("ok", "error", "oom", "skipped"))
        if self.statuses["crashed"]:
            counts += f", {self.statuses['crashed']} crashed"
        resumed = (
            f" ({self.skipped_as_recorded} already recorded)" if self.skipped_as_recorded else ""
        )
        state = "interrupted" if self.interrupted else "done"
        line = (
            f"{state}: {sum(self.statuses.values())} cases run{resumed}: {counts} "
            f"in {self.elapsed_s:.1f} s; run directory {self.run_dir}"
        )
        closed = [f"{self.closed[r]} {CLOSED_AS[r]}" for r in CLOSED_AS if self.closed[r]]
        if closed:
            line += "\nrounds: of the cases timed, " + "; ".join(closed) + "."
        if self.failures:
            line += f"\nfailed: {len(self.failures)} case(s), each a row with its error:"
            line += "".join(f"\n  {label}: {first}" for label, first in self.failures)
        if self.flagged_rows:
            line += (
                f"\nwarning: {self.flagged_rows} case(s) flagged in the `quality` column "
                "(`bench compare` calls a case measured on a disturbed machine inconclusive):"
            )
            for flag in FLAGS:
                if self.flags[flag]:
                    line += f"\n  {self.flags[flag]} {flag}: {FLAG_HINTS[flag]}"
        return line


def unsupported_reason(case: Case) -> str:
    """Why the registry says a variant cannot run this case, or ''."""
    if case.role != "variant":
        return ""
    info = av.info(case.variant.name)
    device_type = torch.device(case.device).type
    if device_type not in info.devices:
        return f"{case.variant.name} supports devices {', '.join(info.devices)}"
    if case.dtype not in info.dtypes:
        return f"{case.variant.name} supports dtypes {', '.join(info.dtypes)}"
    if case.mode == "train" and not info.backward:
        return f"{case.variant.name} has no backward"
    return ""


def build_case(case: Case) -> tuple[nn.Module, torch.Tensor]:
    """The case's module and input, on its device, dtype and memory format."""
    module = build_module(case)
    memory_format = (
        torch.channels_last if case.memory_format == "channels_last" else torch.contiguous_format
    )
    dtype = DTYPES[case.dtype]
    module = module.to(device=case.device, dtype=dtype, memory_format=memory_format)
    x = torch.randn(
        case.batch, case.channels, case.height, case.width, device=case.device, dtype=dtype
    ).contiguous(memory_format=memory_format)
    return module, x


@dataclass
class PendingCase:
    """A case between its first and its last round: what it will write when done."""

    case: Case
    row: dict[str, Any]
    prepared: PreparedCase
    seed: int
    rounds: list[TimedRound] = field(default_factory=list)
    wall_s: float = 0.0
    last_cost_s: float = 0.0  # the last round in all: building, first call and timing

    @property
    def width(self) -> float:
        """The relative half-width of the median's 95% interval over all its rounds (NaN:
        too few samples)."""
        return combine([r.timing for r in self.rounds]).ci_relative_half_width

    def report_to(self, scheduler: RoundScheduler) -> str:
        """The last round, told to the scheduler; why the case closed, or ''."""
        last = self.rounds[-1]
        return scheduler.record(
            self.case.case_id, cost_s=self.last_cost_s, timed_s=last.wall_s,
            sampling_s=last.timing.sampling_s, samples=last.timing.n, width=self.width,
        )  # fmt: skip


class CaseRunner:
    """Measures cases for one sweep, a round at a time; counts are computed once per shape."""

    def __init__(self, run: SweepRun):
        self.run = run
        self.spec = run.spec
        self.run_dir = run.run_dir
        self._counts: dict[tuple, Counts] = {}
        # a simulated sweep counts each case under valgrind instead of timing it
        self.counter: RegionCounter | None = (
            region_counter() if run.spec.timing.instrument == "simulated" else None
        )

    def start(
        self, case: Case, settings: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, PendingCase | None]:
        """The case's first round: (a finished row, None) when it is skipped or fails; else
        (None, the case to go on with or finish)."""
        seed = self.run.seed_of(case)
        row = result_row(case, self.run.run_id, seed)
        reason = unsupported_reason(case)
        if reason:
            row.update(status="skipped", error=reason, wall_time_s=0.0)
            return row, None
        pending = None
        started = time.perf_counter()
        try:
            module, x = self._build(case, seed)
            built = time.perf_counter()
            prepared = prepare_case(
                module, x, mode=case.mode, threads=self.spec.threads, compile=case.compile,
                paired=self.spec.timing.paired_reference and case.role == "variant"
                and self.counter is None,
                counts_cache=self._counts, counts_key=case.shape_key,
                contract=output_contract(case),
            )  # fmt: skip
            if self.counter is not None:  # one pass: the counts do not move between rounds
                counted = self.counter.count(mode_fn(case.mode, prepared.timed, x))
                row.update(simulated_fields(counted, prepared, self.spec.threads))
                row.update(status="ok", wall_time_s=time.perf_counter() - started)
                return row, None
            pending = PendingCase(case, row, prepared, seed)
            self._time(pending, prepared.timed, x, settings)
            # what later rounds repeat: the build and the round, not the counting
            pending.last_cost_s = built - started + pending.rounds[-1].wall_s
            if self.spec.profile:
                profile_case(
                    mode_fn(case.mode, prepared.timed, x),
                    self.run_dir.traces / trace_name(case.label),
                    device=case.device,
                )
            if not case.compile:  # later rounds build their own; a network is not kept waiting
                prepared.timed = None
        except Exception as error:  # a failing case is recorded; the sweep goes on
            _record_failure(row, error)
            row["wall_time_s"] = time.perf_counter() - started
            return row, None
        finally:
            _release(case)
        return None, pending

    def next_round(self, pending: PendingCase, settings: dict[str, Any]) -> dict[str, Any] | None:
        """Another round of a started case, on a freshly built module; a failure ends the
        case as an error row, returned."""
        started = time.perf_counter()
        try:
            module, x = self._build(pending.case, pending.seed)
            # a compiled module is kept (compiling again costs); an eager one is built afresh,
            # its first use (lazy loading) long done in the first round, so the warm-up
            # absorbs its first call
            timed = module if pending.prepared.timed is None else pending.prepared.timed
            self._time(pending, timed, x, settings)
        except Exception as error:
            _record_failure(pending.row, error)
            pending.row["wall_time_s"] = pending.wall_s + time.perf_counter() - started
            return pending.row
        finally:
            _release(pending.case)
        pending.last_cost_s = time.perf_counter() - started
        return None

    def finish(
        self, pending: PendingCase, closed: str = ""
    ) -> tuple[dict[str, Any], CaseMeasurement]:
        """The case's row and measurement from its rounds; `closed` says why it took no more
        (the scheduler's reason, in `stop_reason`)."""
        measured = finish_case(pending.prepared, pending.rounds)
        pending.row.update(measured_fields(measured, pending.case.batch))
        pending.row.update(status="ok", wall_time_s=pending.wall_s)
        if closed:
            pending.row["stop_reason"] = closed
        return pending.row, measured

    def _build(self, case: Case, seed: int) -> tuple[nn.Module, torch.Tensor]:
        seed_everything(seed)  # every round builds the same weights and input
        return build_case(case)

    def _time(
        self, pending: PendingCase, module: nn.Module, x: torch.Tensor, settings: dict[str, Any]
    ) -> None:
        timed = time_round(
            pending.case.mode, module, x, settings, threads=self.spec.threads,
            reference=pending.prepared.reference, launch=pending.case.launch,
            call_bytes=pending.prepared.counts.bytes_moved,
        )  # fmt: skip
        pending.rounds.append(timed)
        pending.wall_s += timed.wall_s


def _record_failure(row: dict[str, Any], error: Exception) -> None:
    if isinstance(error, ChannelsUnsupported):  # e.g. groups that do not divide the channels
        row.update(status="skipped", error=str(error))
    elif _out_of_memory(error):
        row.update(status="oom", error=_one_line(error))
    else:
        row.update(status="error", error=f"{type(error).__name__}: {_one_line(error)}")
        row["error"] += "".join(FRAME_SEPARATOR + frame for frame in code_frames(error))


# where the harness and the libraries under it live: their frames say nothing a user can act on
_NOT_CODE_UNDER_TEST = tuple(
    str(Path(module.__file__).resolve().parent) for module in (torch, sys.modules["bench"])
)
_STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve())
FRAME_SEPARATOR = " | "  # between an error column's message and the frames after it


def _is_code_under_test(filename: str) -> bool:
    """Not the harness, not torch, not the standard library (a package installed beside the
    standard library, in its site-packages, is someone's code and counts)."""
    path = str(Path(filename).resolve())
    if path.startswith(_NOT_CODE_UNDER_TEST):
        return False
    installed = "site-packages" in path or "dist-packages" in path
    return installed or not path.startswith(_STDLIB)


def code_frames(error: BaseException, keep: int = 3) -> list[str]:
    """Where the error arose in the code under test: the innermost `keep` frames outside the
    harness, torch and the standard library (a block's own file and line), then the innermost
    frame of all when that lies elsewhere (inside torch, say)."""
    frames = traceback.extract_tb(error.__traceback__)
    chosen = [f for f in frames if _is_code_under_test(f.filename)][-keep:]
    if frames and (not chosen or chosen[-1] is not frames[-1]):
        chosen.append(frames[-1])
    return [f"{f.filename}:{f.lineno} in {f.name}: {(f.line or '').strip()}" for f in chosen]


def first_line(text: str) -> str:
    """An error column's message, without the frames after it."""
    return str(text).split(FRAME_SEPARATOR)[0]


def _release(case: Case) -> None:
    if torch.device(case.device).type == "cuda":
        torch.cuda.empty_cache()


def _out_of_memory(error: Exception) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or the CPU allocator's RuntimeError."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "DefaultCPUAllocator" in text or "not enough memory" in text
    )


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())[:500]


def _record_ceilings(spec: SweepSpec, run_dir: RunDirectory, quiet: bool) -> None:
    """Roofline ceilings of every (device, dtype) in the sweep, once per run directory."""
    recorded = run_dir.recorded_ceilings()
    for device in spec.devices:
        for dtype in spec.dtypes:
            if (device, dtype) in recorded:
                continue
            if not quiet:
                print(f"measuring roofline ceilings on {device} {dtype}", flush=True)
            try:
                run_dir.append_ceilings(
                    measure_ceilings(device, DTYPES[dtype], threads=spec.threads, max_time_s=0.5)
                )
            except Exception as error:  # a missing ceiling only costs the roofline its lines
                print(f"warning: ceilings on {device} {dtype} failed: {error}", file=sys.stderr)


class _Sweep:
    """One pass of `execute`: its runner, its scheduler, its progress bar, the cases between
    rounds."""

    def __init__(self, run: SweepRun, todo: list[Case], summary: RunSummary, quiet: bool):
        self.run = run
        self.run_dir = run.run_dir
        self.todo = todo
        self.summary = summary
        self.quiet = quiet
        self.runner = CaseRunner(run)
        self.scheduler = RoundScheduler(run.spec.timing)
        self.rounds = run.spec.timing.rounds
        self.pending: dict[str, PendingCase] = {}
        self.bar = progress(len(todo) * self.rounds, "sweep", quiet)

    def record(self, row: dict[str, Any], measured: CaseMeasurement | None) -> None:
        if measured is not None:  # samples first: a row on disk always has its samples
            self.run_dir.append_samples(self.run.run_id, row["case_id"], measured.timing)
        self.run_dir.append_row(row)
        self.summary.statuses[row["status"]] += 1
        self.summary.count_flags([] if measured is None else measured.flags)
        if row["status"] in ("error", "oom"):
            first = first_line(row["error"])
            label = case_label(row)
            self.summary.failures.append((label, first))
            if not self.quiet:
                self.bar.write(f"{row['status']}: {label}: {first}")

    def show(self, case: Case, index: int) -> None:
        """The case about to be timed, on the bar and on disk (a process death leaves it)."""
        parts = [f"{self.summary.flagged_rows} flagged"] if self.summary.flagged_rows else []
        left = self.scheduler.budget_left_s
        if index > 0:
            if left is not None:
                parts.append(f"budget left {max(left, 0):.0f} s")
            parts.append(f"{len(self.pending)} open")
        if self.rounds > 1:
            parts.append(f"round {index + 1}: {case.label}")
        else:
            parts.append(case.label)
        self.bar.set_postfix_str("; ".join(parts), refresh=True)
        self.run_dir.mark_in_progress(case.case_id, case.label)

    def close(self, case_id: str, closed: str) -> None:
        """Write a case that takes no more rounds; the bar drops the rounds it will not take."""
        state = self.pending.pop(case_id)
        self.bar.update(self.rounds - len(state.rounds))
        self.summary.closed[closed] += 1
        self.record(*self.runner.finish(state, closed))

    def fail(self, case_id: str, row: dict[str, Any]) -> None:
        state = self.pending.pop(case_id)
        self.scheduler.fail(case_id)
        self.bar.update(self.rounds - len(state.rounds))
        self.record(row, None)

    def first_round(self) -> None:
        self.scheduler.start()  # the budget is the cases', not the builds before them
        settings = self.scheduler.first_settings()
        for case in self.todo:
            self.show(case, 0)
            row, started = self.runner.start(case, settings)
            self.run_dir.clear_in_progress()
            if row is not None:
                self.bar.update(self.rounds)
                self.record(row, None)
                continue
            self.bar.update(1)
            self.pending[case.case_id] = started
            closed = started.report_to(self.scheduler)
            if closed:
                self.close(case.case_id, closed)  # on disk at once: nothing left

    def later_rounds(self) -> None:
        """Passes over the open cases, as the scheduler plans them, until none is open."""
        while planned := self.scheduler.next_pass():
            self.close_closed()  # closed by the budget before this pass
            for entry in planned:
                state = self.pending[entry.key]
                self.show(state.case, len(state.rounds))
                failed = self.runner.next_round(state, entry.settings)
                self.run_dir.clear_in_progress()
                if failed is not None:
                    self.fail(entry.key, failed)
                    continue
                self.bar.update(1)
                closed = state.report_to(self.scheduler)
                if closed:
                    self.close(entry.key, closed)
        self.close_closed()

    def close_closed(self) -> None:
        for case_id in list(self.pending):
            closed = self.scheduler.cases[case_id].closed
            if closed:
                self.close(case_id, closed)

    def finish_pending(self) -> None:
        """After Ctrl-C: write the cases still between rounds, with the rounds they have, in
        the sweep's order."""
        for case_id in list(self.pending):
            state = self.pending.pop(case_id)
            if state.rounds:
                self.record(*self.runner.finish(state, "interrupted"))


def _prepare_variants(todo: list[Case], quiet: bool) -> None:
    """What the sweep's variants build on first use (the fused CPU kernels), built before the
    first round: the build is not in any case's time, and the progress bar's rate is the
    sweep's. A build that fails is left to the cases, which record the error."""
    wanted: dict[Any, list[str]] = {}
    registered = set(av.available())
    for case in todo:
        if case.role == "reference" or case.variant.name not in registered:
            continue
        prepare = av.info(case.variant.name).prepare
        device = case.device.split(":")[0]
        if prepare is not None and case.variant.name not in wanted.get((prepare, device), []):
            wanted.setdefault((prepare, device), []).append(case.variant.name)
    for (prepare, device), names in wanted.items():
        began = time.perf_counter()
        if not quiet:
            print(f"building what {', '.join(names)} build on first use ({device}), before "
                  "the first round", flush=True)  # fmt: skip
        try:
            prepare(device)
        except Exception as error:  # the cases say so, one by one, with the error
            print(f"warning: preparing {', '.join(names)} failed: {error}", file=sys.stderr)
            continue
        if not quiet:
            print(f"  done in {time.perf_counter() - began:.1f} s", flush=True)


def execute(run: SweepRun, *, todo: list[Case] | None = None, quiet: bool = False) -> RunSummary:
    """Time `todo` (default: all the run's cases) into the run directory, round by round
    through the whole sweep: a case's rounds lie a pass apart, so a passing disturbance touches
    one of them, and `bench compare` sees it as spread. Ctrl-C stops cleanly: run.json says
    "interrupted" and the summary's exit code is 130."""
    started = time.perf_counter()
    todo = run.cases if todo is None else todo
    summary = RunSummary(run.run_dir.path, skipped_as_recorded=len(run.cases) - len(todo))
    simulated = run.spec.timing.instrument == "simulated"
    if simulated and not on_valgrind():
        return _execute_under_valgrind(run, todo, summary, started, quiet)
    sweep = _Sweep(run, todo, summary, quiet)
    try:
        if not simulated:  # the roofline's ceilings are wall-clock rates
            _record_ceilings(run.spec, run.run_dir, quiet)
        _prepare_variants(todo, quiet)
        sweep.first_round()
        sweep.later_rounds()
    except KeyboardInterrupt:
        summary.interrupted = True
        run.run_dir.clear_in_progress()  # stopped by the user, not a crash: it runs on resume
        sweep.finish_pending()
    finally:
        sweep.bar.close()
        summary.elapsed_s = time.perf_counter() - started
        _close(run, summary)
    return summary


def dump_dir(run_dir: RunDirectory) -> Path:
    """Where callgrind writes its dumps (each read and removed at once) and its log."""
    return run_dir.path / "callgrind"


def run_child(run_dir: RunDirectory, quiet: bool) -> int:
    """Count the run directory's cases not yet recorded, in a process under valgrind
    (`bench.sweep.under_valgrind`); its exit code (130 after Ctrl-C, which reaches both
    processes: the child writes what it counted)."""
    require_valgrind()
    run_dir.update_env(instrument=instrument_facts())
    dumps = dump_dir(run_dir)
    dumps.mkdir(parents=True, exist_ok=True)
    args = ["-m", "bench.sweep.under_valgrind", str(run_dir.path), *(["--quiet"] if quiet else [])]
    if not quiet:
        print("counting each case under valgrind (callgrind, one thread): no case is timed on "
              "the clock", flush=True)  # fmt: skip
    child = subprocess.Popen(valgrind_command(args, dumps), env=valgrind_environment(dumps))
    try:
        return child.wait()
    except KeyboardInterrupt:  # the child got it too: it writes its rows and stops
        return child.wait()


def _execute_under_valgrind(
    run: SweepRun, todo: list[Case], summary: RunSummary, started: float, quiet: bool
) -> RunSummary:
    """A simulated sweep: its cases counted by a second process under valgrind, which writes
    their rows; the summary read back from them."""
    code = run_child(run.run_dir, quiet)
    wanted = {case.case_id for case in todo}
    results = read_results(run.run_dir.path) if run.run_dir.has_results else None
    rows = [] if results is None else results[results["case_id"].isin(wanted)].to_dict("records")
    for row in rows:
        summary.statuses[row["status"]] += 1
        if row["status"] in ("error", "oom"):
            summary.failures.append((case_label(row), first_line(row["error"])))
    summary.interrupted = code == 130
    if code not in (0, 1, 130):  # valgrind or the process under it died
        summary.statuses["crashed"] += 1
        summary.failures.append(
            ("the process under valgrind", f"exit code {code}; see {dump_dir(run.run_dir)}")
        )
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _close(run: SweepRun, summary: RunSummary) -> None:
    run_dir = run.run_dir
    results = read_results(run_dir.path) if run_dir.has_results else None
    run_dir.write_parquet(results)
    run_dir.update_env(load_average_end=load_average())
    run_dir.update_info(
        status="interrupted" if summary.interrupted else "complete",
        finished_utc=utc_now(),
        cases_total=len(run.cases),
        cases_recorded=0 if results is None else len(results),
        warnings=[] if results is None else quality_warnings(results),
    )


def run_sweep(
    spec: SweepSpec, out: str | Path | None = None, *, shard: Shard | None = None,
    quiet: bool = False,
) -> RunSummary:  # fmt: skip
    """Run a sweep (or one `shard` of it) into a new run directory: `out`, or results/<run id>."""
    return execute(start_run(spec, out, shard=shard), quiet=quiet)


def resume_sweep(
    path: str | Path, *, retry_failed: bool = False, force: bool = False, quiet: bool = False
) -> RunSummary:
    """Run what a run directory lacks (a resumed shard keeps to its own part). A case whose
    process died is recorded as `crashed` and the sweep goes on past it; `retry_failed` runs
    crashed, error and oom cases again."""
    run = open_resumed(path, force=force)
    plan = prepare_resume(run, retry_failed=retry_failed)
    if plan.crashed is not None and not quiet:
        print(f"crashed: {plan.crashed.label}: the last process died during it", flush=True)
    summary = execute(run, todo=plan.todo, quiet=quiet)
    summary.statuses["crashed"] += plan.crashed is not None
    return summary
