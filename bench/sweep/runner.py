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

import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from tqdm import tqdm

import attention_variants as av
from attention_variants.checks import ChannelsUnsupported

from ..measurement.case import (
    CaseMeasurement,
    PreparedCase,
    TimedRound,
    finish_case,
    first_call,
    prepare_case,
    round_settings,
    time_round,
)
from ..measurement.ceilings import measure_ceilings
from ..measurement.counting import Counts
from ..measurement.environment import capture, case_seed, load_average, seed_everything
from ..measurement.profiling import profile_case, trace_name
from ..measurement.quality import FLAG_HINTS, FLAGS
from ..measurement.timing import mode_fn
from .cases import Case, build_module, expand
from .results import RunDirectory, new_run_id, quality_warnings, read_results
from .resume import drop_failed, environment_differences, record_crash, still_to_run
from .shards import Shard, select
from .spec import SweepSpec, spec_from_dict

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

    def count_flags(self, quality: str | None) -> None:
        if quality and quality != "ok":
            self.flagged_rows += 1
            self.flags.update(quality.split(";"))

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


def _base_row(case: Case, run_id: str, seed: int) -> dict[str, Any]:
    return {
        "run_id": run_id, "case_id": case.case_id, "role": case.role, "model": case.model,
        "variant": case.variant.name, "options": case.variant.options_label,
        "variant_label": case.variant.label, "batch": case.batch, "channels": case.channels,
        "height": case.height, "width": case.width, "dtype": case.dtype, "device": case.device,
        "mode": case.mode, "memory_format": case.memory_format, "compile": case.compile,
        "seed": seed,
    }  # fmt: skip


@dataclass
class PendingCase:
    """A case between its first and its last round: what it will write when done."""

    case: Case
    row: dict[str, Any]
    prepared: PreparedCase
    seed: int
    rounds: list[TimedRound] = field(default_factory=list)
    wall_s: float = 0.0


class CaseRunner:
    """Measures cases for one sweep, a round at a time; counts are computed once per shape."""

    def __init__(self, spec: SweepSpec, run_dir: RunDirectory, run_id: str):
        self.spec = spec
        self.run_dir = run_dir
        self.run_id = run_id
        self._counts: dict[tuple, Counts] = {}

    def start(self, case: Case) -> tuple[dict[str, Any] | None, PendingCase | None]:
        """The case's first round: (a finished row, None) when it is skipped or fails; else
        (None, the case to go on with or finish)."""
        seed = case_seed(self.spec.seed, *case.key)
        row = _base_row(case, self.run_id, seed)
        reason = unsupported_reason(case)
        if reason:
            row.update(status="skipped", error=reason, wall_time_s=0.0)
            return row, None
        pending = None
        started = time.perf_counter()
        try:
            module, x = self._build(case, seed)
            prepared = prepare_case(
                module, x, mode=case.mode, threads=self.spec.threads, compile=case.compile,
                paired=self.spec.timing.paired_reference and case.role == "variant",
                counts_cache=self._counts, counts_key=case.shape_key,
            )  # fmt: skip
            pending = PendingCase(case, row, prepared, seed)
            self._time(pending, prepared.timed, x, 0)
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

    def done(self, pending: PendingCase) -> bool:
        """No round is left in the case's budget (all taken, or its time cap used)."""
        return round_settings(self.spec.timing, len(pending.rounds), pending.wall_s) is None

    def next_round(self, pending: PendingCase, index: int) -> dict[str, Any] | None:
        """Round `index` of a started case, on a freshly built module; a failure ends the case
        as an error row, returned."""
        started = time.perf_counter()
        try:
            module, x = self._build(pending.case, pending.seed)
            timed = pending.prepared.timed  # a compiled module is kept: compiling again costs
            if timed is None:
                timed = module
                first_call(pending.case.mode, module, x, self.spec.threads)
            self._time(pending, timed, x, index)
        except Exception as error:
            _record_failure(pending.row, error)
            pending.row["wall_time_s"] = pending.wall_s + time.perf_counter() - started
            return pending.row
        finally:
            _release(pending.case)
        return None

    def finish(self, pending: PendingCase) -> tuple[dict[str, Any], CaseMeasurement]:
        measured = finish_case(pending.prepared, pending.rounds)
        pending.row.update(measured.row_fields(pending.case.batch))
        pending.row.update(status="ok", wall_time_s=pending.wall_s)
        return pending.row, measured

    def _build(self, case: Case, seed: int) -> tuple[nn.Module, torch.Tensor]:
        seed_everything(seed)  # every round builds the same weights and input
        return build_case(case)

    def _time(self, pending: PendingCase, module: nn.Module, x: torch.Tensor, index: int) -> None:
        settings = round_settings(self.spec.timing, index, pending.wall_s)
        timed = time_round(
            pending.case.mode, module, x, settings, threads=self.spec.threads,
            reference=pending.prepared.reference,
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
        row["error"] += " | " + _one_line(traceback.format_exc(limit=-1))


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


def load_spec(run_dir: RunDirectory) -> SweepSpec:
    """The spec a run directory was started with (for --resume)."""
    spec, _ = spec_from_dict(yaml.safe_load((run_dir.path / "spec.yaml").read_text()))
    return spec


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


def recorded_shard(run_dir: RunDirectory) -> Shard | None:
    """The shard a run directory holds, from its run.json (None: the whole sweep)."""
    label = run_dir.read_json("run.json").get("shard")
    return Shard.parse(label) if label else None


def cases_of(spec: SweepSpec, shard: Shard | None) -> list[Case]:
    """The sweep's cases, or one shard's."""
    return expand(spec) if shard is None else select(expand(spec), shard, spec.timing)


class ResumeError(ValueError):
    """A run directory that cannot be resumed here (exit code 2)."""


def open_resumed(resume: str | Path, *, force: bool = False) -> tuple[RunDirectory, SweepSpec]:
    """The run directory and its spec, after checking this machine and code can go on with it."""
    run_dir = RunDirectory(resume)
    if not (run_dir.path / "spec.yaml").exists():
        raise ResumeError(f"--resume {run_dir.path}: no spec.yaml; not a run directory")
    differences = environment_differences(run_dir)
    if differences and not force:
        raise ResumeError(
            f"--resume {run_dir.path}: this is not the machine and code the run started on:\n  "
            + "\n  ".join(differences)
            + "\n(--force resumes anyway; the rows would then mix the two)"
        )
    return run_dir, load_spec(run_dir)


def run_sweep(
    spec: SweepSpec | None,
    out: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    retry_failed: bool = False,
    force: bool = False,
    shard: Shard | None = None,
    quiet: bool = False,
) -> RunSummary:
    """Run a sweep into a new run directory (`out`, or results/<run id>), or resume one.

    On resume, a case whose process died is recorded as `crashed` and the sweep goes on past it;
    `retry_failed` runs crashed, error and oom cases again. With `shard`, only that part of the
    cases runs (a resumed shard keeps its own). Ctrl-C anywhere stops cleanly: run.json says
    "interrupted" and the summary's exit code is 130.
    """
    started = time.perf_counter()
    if resume is not None:
        run_dir, spec = open_resumed(resume, force=force)
        run_id = run_dir.run_id
        shard = recorded_shard(run_dir)
        run_dir.update_run_info(
            status="running", resumed_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        )
    else:
        run_id = new_run_id()
        run_dir = RunDirectory(out or Path("results") / run_id)
        run_dir.create(spec.to_dict(), capture(seed=spec.seed), run_id)
        if shard is not None:
            run_dir.update_run_info(shard=shard.label)
    cases = cases_of(spec, shard)
    runner = CaseRunner(spec, run_dir, run_id)
    run_dir.drop_orphan_samples()  # samples of a case whose row was never written
    crashed = record_crash(
        run_dir, cases, lambda c: _base_row(c, run_id, case_seed(spec.seed, *c.key))
    )
    if crashed is not None and not quiet:
        print(f"crashed: {crashed.label}: the last process died during it", flush=True)
    if retry_failed:
        drop_failed(run_dir)
    todo = still_to_run(run_dir, cases, retry_failed)
    summary = RunSummary(run_dir.path, skipped_as_recorded=len(cases) - len(todo))
    if crashed is not None:
        summary.statuses["crashed"] += 1
    rounds = spec.timing.rounds
    bar = tqdm(
        total=len(todo) * rounds, disable=quiet, unit="case", dynamic_ncols=True, desc="sweep"
    )
    pending: dict[str, PendingCase] = {}

    def record(row: dict[str, Any], measured: CaseMeasurement | None) -> None:
        if measured is not None:
            # samples first: a row on disk always has its samples
            run_dir.append_samples(run_id, row["case_id"], measured.timing)
        run_dir.append_row(row)
        summary.statuses[row["status"]] += 1
        summary.count_flags(row.get("quality"))
        if row["status"] in ("error", "oom") and not quiet:
            tqdm.write(f"{row['status']}: {row['variant_label']}: {row['error'][:200]}")

    def progress(case: Case, index: int) -> None:
        flagged = f"{summary.flagged_rows} flagged; " if summary.flagged_rows else ""
        where = f"round {index + 1}/{rounds}: " if rounds > 1 else ""
        bar.set_postfix_str(flagged + where + case.label, refresh=True)
        run_dir.mark_in_progress(case.case_id, case.label)

    try:
        _record_ceilings(spec, run_dir, quiet)
        # round by round through the whole sweep: a case's rounds lie minutes apart, so a
        # passing disturbance touches one of them, and `bench compare` sees it as spread
        for case in todo:
            progress(case, 0)
            row, started_case = runner.start(case)
            run_dir.clear_in_progress()
            if row is not None:
                bar.update(rounds)
                record(row, None)
            elif runner.done(started_case):
                bar.update(rounds)
                record(*runner.finish(started_case))  # on disk at once: nothing left to time
            else:
                bar.update(1)
                pending[case.case_id] = started_case
        for index in range(1, rounds):
            for case_id, case_state in list(pending.items()):
                progress(case_state.case, index)
                failed = runner.next_round(case_state, index)
                run_dir.clear_in_progress()
                finished = failed is not None or runner.done(case_state)
                bar.update(rounds - index if finished else 1)  # rounds it will not take too
                if failed is not None:
                    del pending[case_id]
                    record(failed, None)
                elif finished:
                    del pending[case_id]
                    record(*runner.finish(case_state))
        for case_id in list(pending):  # in the sweep's order
            record(*runner.finish(pending.pop(case_id)))
    except KeyboardInterrupt:
        summary.interrupted = True
        run_dir.clear_in_progress()  # stopped by the user, not a crash: the case runs on resume
        for case_state in pending.values():  # what was timed is kept, with fewer rounds
            if case_state.rounds:
                record(*runner.finish(case_state))
    finally:
        bar.close()
        summary.elapsed_s = time.perf_counter() - started
        results = read_results(run_dir.path) if run_dir.results_csv.exists() else None
        run_dir.write_parquet(results)
        run_dir.update_env(load_average_end=load_average())
        run_dir.update_run_info(
            status="interrupted" if summary.interrupted else "complete",
            finished_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            cases_total=len(cases),
            cases_recorded=0 if results is None else len(results),
            warnings=[] if results is None else quality_warnings(results),
        )
    return summary
