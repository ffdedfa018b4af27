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

from ..measurement.ceilings import measure_ceilings
from ..measurement.counting import Counts, count
from ..measurement.environment import capture, case_seed, seed_everything
from ..measurement.memory import peak_memory
from ..measurement.profiling import profile_case, trace_name
from ..measurement.references import REFERENCES
from ..measurement.timing import Measurement, combine, measure, mode_fn
from .results import RunDirectory, new_run_id, read_results
from .spec import Case, SweepSpec, expand, spec_from_dict

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class RunSummary:
    run_dir: Path
    statuses: Counter = field(default_factory=Counter)
    skipped_as_recorded: int = 0
    interrupted: bool = False
    elapsed_s: float = 0.0

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
        return (
            f"{state}: {sum(self.statuses.values())} cases run{resumed}: {counts} "
            f"in {self.elapsed_s:.1f} s; run directory {self.run_dir}"
        )


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


def _latency_fields(m: Measurement, batch: int) -> dict[str, Any]:
    low, high = m.ci
    return {
        "threads": m.threads, "latency_median_s": m.median, "latency_iqr_s": m.iqr,
        "latency_ci_low_s": low, "latency_ci_high_s": high, "latency_mean_s": m.mean,
        "latency_std_s": m.std, "n_samples": m.n, "block_size": m.block_size,
        "stop_reason": m.stop_reason, "images_per_s": batch / m.median,
    }  # fmt: skip


def _count_fields(c: Counts) -> dict[str, Any]:
    return {
        "flops": c.flops, "macs": c.macs, "bytes_read": c.bytes_read,
        "bytes_written": c.bytes_written, "bytes_moved": c.bytes_moved,
        "unscored_ops": " ".join(sorted(c.unscored_ops)),
    }  # fmt: skip


class CaseRunner:
    """Measures cases for one sweep; counts are computed once per shape and reused."""

    def __init__(self, spec: SweepSpec, run_dir: RunDirectory, run_id: str):
        self.spec = spec
        self.run_dir = run_dir
        self.run_id = run_id
        self._counts: dict[tuple, Counts] = {}

    def run(self, case: Case) -> tuple[dict[str, Any], Measurement | None]:
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
            except torch.OutOfMemoryError as error:
                row.update(status="oom", error=_one_line(error))
            except Exception as error:  # a failing case is recorded; the sweep goes on
                row.update(status="error", error=f"{type(error).__name__}: {_one_line(error)}")
                row["error"] += " | " + _one_line(traceback.format_exc(limit=-1))
            finally:
                if torch.device(case.device).type == "cuda":
                    torch.cuda.empty_cache()
        row["wall_time_s"] = time.perf_counter() - started
        return row, measurement

    def _measure(self, case: Case, seed: int, row: dict[str, Any]) -> Measurement:
        seed_everything(seed)
        module, x = build_case(case)
        row["params"] = sum(p.numel() for p in module.parameters())
        timed = torch.compile(module) if case.compile else module
        budget = self.spec.timing
        rounds = []
        for _ in range(budget.rounds):
            # each round times a fresh copy of the input: where a tensor lands in memory moves
            # cache-sized cases by several percent, and pooling rounds averages that out
            x_round = x.clone()
            reference = None
            if budget.paired_reference and case.role == "variant":
                reference = mode_fn(case.mode, REFERENCES["copy"](case.channels), x_round)
            rounds.append(measure(
                mode_fn(case.mode, timed, x_round), reference=reference, device=case.device,
                threads=self.spec.threads, warmup_s=budget.warmup_s,
                min_time_s=budget.min_time_s / budget.rounds,
                max_time_s=budget.max_time_s / budget.rounds, target_ci=budget.target_ci,
                min_samples=max(3, -(-budget.min_samples // budget.rounds)),
            ))  # fmt: skip
            if rounds[-1].n < 10:
                break  # calls this slow are not cache-sized: spend the budget on samples
        measurement = combine(rounds)
        row.update(_latency_fields(measurement, case.batch))
        train = case.mode == "train"
        module.train(train)  # counts and memory of the eager module, in the timed mode
        if case.shape_key not in self._counts:
            self._counts[case.shape_key] = count(module, x, backward=train)
        row.update(_count_fields(self._counts[case.shape_key]))
        row["peak_memory_bytes"] = peak_memory(module, x, backward=train)
        if self.spec.profile:
            profile_case(
                mode_fn(case.mode, timed, x),
                self.run_dir.traces / trace_name(case.label),
                device=case.device,
            )
        return measurement


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
            bar.set_postfix_str(case.label, refresh=True)
            row, measurement = runner.run(case)
            run_dir.append_row(row)
            if measurement is not None:
                run_dir.append_samples(
                    run_id,
                    case.case_id,
                    measurement.samples_s,
                    measurement.block_size,
                    measurement.reference_samples_s,
                )
            summary.statuses[row["status"]] += 1
            if row["status"] in ("error", "oom") and not quiet:
                tqdm.write(f"{row['status']}: {case.label}: {row['error'][:200]}")
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        summary.elapsed_s = time.perf_counter() - started
        run_dir.write_parquet()
        run_dir.update_run_info(
            status="interrupted" if summary.interrupted else "complete",
            finished_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            cases_total=len(cases),
            cases_recorded=len(read_results(run_dir.path)) if run_dir.results_csv.exists() else 0,
        )
    return summary
