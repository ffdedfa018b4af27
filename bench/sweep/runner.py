"""Runs the cases of a sweep, one fresh seeded module each, and records a row per case at once.

A case that fails is a row with status `oom` or `error` and the sweep goes on; Ctrl-C leaves every
recorded row on disk, and ``--resume RUN_DIR`` runs only the cases not yet recorded.
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
from attention_variants import backbones

from ..measurement.case import CaseMeasurement, measure_case
from ..measurement.ceilings import measure_ceilings
from ..measurement.counting import Counts
from ..measurement.environment import capture, case_seed, load_average, seed_everything
from ..measurement.profiling import profile_case, trace_name
from ..measurement.quality import FLAG_HINTS, FLAGS
from ..measurement.references import REFERENCES
from ..measurement.timing import mode_fn
from .results import RunDirectory, new_run_id, quality_warnings, read_results
from .spec import Case, SweepSpec, expand, spec_from_dict

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
        return self.statuses["error"] + self.statuses["oom"]

    @property
    def exit_code(self) -> int:
        """0: every case ran (or was skipped as unsupported); 1: some failed; 130: interrupted."""
        if self.interrupted:
            return 130
        return 1 if self.failed else 0

    def line(self) -> str:
        counts = ", ".join(f"{self.statuses[s]} {s}" for s in ("ok", "error", "oom", "skipped"))
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
                f"\nwarning: {self.flagged_rows} case(s) flagged in the `quality` column; "
                "`bench compare` calls them inconclusive:"
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
    if case.role == "network":
        depth = int(case.model.removeprefix("resnet"))
        attention = None if case.variant.name == "none" else case.variant.name
        module = backbones.resnet(depth, attention, case.variant.options_dict or None)
    elif case.role == "reference" and case.variant.name in REFERENCES:
        module = REFERENCES[case.variant.name](case.channels)
    else:
        module = av.create(case.variant.name, case.channels, **case.variant.options_dict)
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


class CaseRunner:
    """Measures cases for one sweep; counts are computed once per shape and device."""

    def __init__(self, spec: SweepSpec, run_dir: RunDirectory, run_id: str):
        self.spec = spec
        self.run_dir = run_dir
        self.run_id = run_id
        self._counts: dict[tuple, Counts] = {}

    def run(self, case: Case) -> tuple[dict[str, Any], CaseMeasurement | None]:
        seed = case_seed(self.spec.seed, *case.key)
        row = _base_row(case, self.run_id, seed)
        started = time.perf_counter()
        measurement = None
        reason = unsupported_reason(case)
        if reason:
            row.update(status="skipped", error=reason)
        else:
            try:
                measurement = self._measure(case, seed, row)
                row["status"] = "ok"
            except (torch.OutOfMemoryError, MemoryError) as error:
                row.update(status="oom", error=_one_line(error))
            except Exception as error:  # a failing case is recorded; the sweep goes on
                row.update(status="error", error=f"{type(error).__name__}: {_one_line(error)}")
                row["error"] += " | " + _one_line(traceback.format_exc(limit=-1))
            finally:
                if torch.device(case.device).type == "cuda":
                    torch.cuda.empty_cache()
        row["wall_time_s"] = time.perf_counter() - started
        return row, measurement

    def _measure(self, case: Case, seed: int, row: dict[str, Any]) -> CaseMeasurement:
        seed_everything(seed)
        module, x = build_case(case)
        measured = measure_case(
            module, x, mode=case.mode, budget=self.spec.timing, threads=self.spec.threads,
            compile=case.compile, paired_reference=self.spec.timing.paired_reference
            and case.role == "variant", counts_cache=self._counts, counts_key=case.shape_key,
        )  # fmt: skip
        row.update(measured.row_fields(case.batch))
        if self.spec.profile:
            timed = torch.compile(module) if case.compile else module
            profile_case(
                mode_fn(case.mode, timed, x),
                self.run_dir.traces / trace_name(case.label),
                device=case.device,
            )
        return measured


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())[:500]


def load_spec(run_dir: RunDirectory) -> SweepSpec:
    """The spec a run directory was started with (for --resume)."""
    raw = yaml.safe_load((run_dir.path / "spec.yaml").read_text())
    preset = raw.pop("preset", None)
    spec, _ = spec_from_dict(raw, preset, [])
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


def run_sweep(
    spec: SweepSpec | None,
    out: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    quiet: bool = False,
) -> RunSummary:
    """Run a sweep into a new run directory (`out`, or results/<run id>), or resume one."""
    started = time.perf_counter()
    if resume is not None:
        run_dir = RunDirectory(resume)
        if not (run_dir.path / "spec.yaml").exists():
            raise FileNotFoundError(f"--resume {run_dir.path}: no spec.yaml; not a run directory")
        spec = load_spec(run_dir)
        run_id = run_dir.run_id
        done = run_dir.recorded_case_ids()
        run_dir.update_run_info(
            status="running", resumed_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        )
    else:
        run_id = new_run_id()
        run_dir = RunDirectory(out or Path("results") / run_id)
        run_dir.create(spec.to_dict(), capture(seed=spec.seed), run_id)
        done = set()
    _record_ceilings(spec, run_dir, quiet)
    cases = expand(spec)
    todo = [c for c in cases if c.case_id not in done]
    summary = RunSummary(run_dir.path, skipped_as_recorded=len(cases) - len(todo))
    runner = CaseRunner(spec, run_dir, run_id)
    bar = tqdm(todo, disable=quiet, unit="case", dynamic_ncols=True, desc="sweep")
    try:
        for case in bar:
            flagged = f"{summary.flagged_rows} flagged; " if summary.flagged_rows else ""
            bar.set_postfix_str(flagged + case.label, refresh=True)
            row, measured = runner.run(case)
            if measured is not None:
                # samples first: a row on disk always has its samples
                run_dir.append_samples(run_id, case.case_id, measured.timing)
            run_dir.append_row(row)
            summary.statuses[row["status"]] += 1
            summary.count_flags(row.get("quality"))
            if row["status"] in ("error", "oom") and not quiet:
                tqdm.write(f"{row['status']}: {case.label}: {row['error'][:200]}")
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        summary.elapsed_s = time.perf_counter() - started
        run_dir.write_parquet()
        run_dir.update_env(load_average_end=load_average())
        run_dir.update_run_info(
            status="interrupted" if summary.interrupted else "complete",
            finished_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            cases_total=len(cases),
            cases_recorded=len(read_results(run_dir.path)) if run_dir.results_csv.exists() else 0,
            warnings=quality_warnings(read_results(run_dir.path))
            if run_dir.results_csv.exists()
            else [],
        )
    return summary
