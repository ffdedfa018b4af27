"""The run directory: the one module that knows its files, their columns and what they mean.

Layout (see results/README.md): spec.yaml, env.json, run.json, results.csv (a row appended and
flushed per case), samples.csv (every timing sample, long format), ceilings.csv, results.parquet
(at the end), in_progress.json (the case in flight), shards/<name>/ (a merged shard's env.json
and run.json), traces/, tables/, plots/.

Everything that reads or writes these files goes through `RunDirectory` (and `read_results`,
`read_samples`); rows are built by `result_row` from a case and its typed measurement; derived
facts (a row's label, its quality flags, the machine a run ran on) are worked out here once.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..measurement.case import CaseMeasurement, PreparedCase
from ..measurement.counting import Counts
from ..measurement.quality import FLAGS
from ..measurement.references import REFERENCE_NAMES
from ..measurement.simulated import SimulatedCounts, median_call, relative_spread
from ..measurement.timing import MIN_SAMPLES_FOR_CI, Measurement, Rotation
from .cases import Case, case_label
from .shards import Shard

__all__ = ["REFERENCE_NAMES", "RunDirectory", "RunDirectoryError", "read_results"]

SCHEMA_VERSION = 3  # 2: quality, rounds and compile columns; a round per sample; 3: counts


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # str, int, float or bool: what the typed reader gives back


def _columns(kind: str, names: str) -> list[Column]:
    return [Column(name, kind) for name in names.split()]


# results.csv, in file order; a column's type is what `read_results` returns it as
RESULT_COLUMNS = [
    *_columns("str", "run_id case_id role model variant options variant_label"),
    *_columns("int", "batch channels height width"),
    *_columns("str", "dtype device mode memory_format"),
    Column("compile", "bool"),
    Column("launch", "str"),  # eager, or graph (replayed from a CUDA graph)
    Column("threads", "int"),
    *_columns("str", "status error"),
    *_columns("float", "latency_median_s latency_iqr_s latency_ci_low_s latency_ci_high_s"),
    *_columns("float", "latency_mean_s latency_std_s"),
    *_columns("int", "n_samples block_size rounds"),
    Column("stop_reason", "str"),
    Column("images_per_s", "float"),
    Column("quality", "str"),  # "ok" or the flags joined by ";" (see `quality_flags`)
    Column("other_cpu_share", "float"),
    *_columns("int", "compile_graphs compile_graph_breaks"),
    *_columns("int", "flops macs bytes_read bytes_written bytes_moved peak_memory_bytes params"),
    Column("unscored_ops", "str"),
    Column("seed", "int"),
    Column("wall_time_s", "float"),
    # the simulated instrument (valgrind): the median counted call, and the counted calls'
    # spread of estimated cycles ((largest - smallest) / median)
    *_columns("int", "instructions l1_misses ll_misses estimated_cycles ll_bytes"),
    Column("cycles_spread", "float"),
    # a graph launch: the input's copies a replay cycles through, the traffic of one cycle, the L2
    *_columns("int", "graph_copies graph_rotated_bytes l2_bytes"),
]
COLUMNS = [c.name for c in RESULT_COLUMNS]
MACHINE_COLUMN = "machine"  # only in a merge of shards from different machines
# columns `read_results` adds, worked out from the stored ones; never written
DERIVED_COLUMNS = ("label", "quality_flags")
SAMPLE_COLUMNS = [
    "run_id",
    "case_id",
    "sample",
    "round",  # each round a separate stretch of time on a fresh copy of the input
    "seconds_per_call",
    "block_size",
    "reference_seconds_per_call",  # the paired copy's sample taken right after
]

_SPEC, _ENV, _INFO = "spec.yaml", "env.json", "run.json"
_RESULTS, _SAMPLES, _CEILINGS = "results.csv", "samples.csv", "ceilings.csv"
_PARQUET, _IN_PROGRESS, _SHARDS = "results.parquet", "in_progress.json", "shards"
_KERNEL_TRAFFIC = "kernel_traffic.csv"  # the Triton kernels' counted bytes per fused case


class RunDirectoryError(ValueError):
    """A run directory that is missing or malformed."""


# ---- facts worked out once -------------------------------------------------------------------


def utc_now() -> str:
    """The one timestamp format of run.json and in_progress.json: ``2026-11-26T17:04:49Z``."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id() -> str:
    """``<UTC time>-<short random id>``: sorts by time, unique across machines."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{secrets.token_hex(3)}"


def quality_text(flags: Iterable[str]) -> str:
    """The `quality` cell: ``ok`` or the flags joined by ``;``, in `FLAGS` order."""
    present = set(flags)
    return ";".join(f for f in FLAGS if f in present) or "ok"


def quality_flags(text: object) -> tuple[str, ...]:
    """A `quality` cell read back as its flags (empty in runs that predate the column)."""
    if not isinstance(text, str) or text in ("", "ok"):
        return ()
    return tuple(text.split(";"))


def machine_facts(env: Mapping[str, Any]) -> dict[str, Any]:
    """What must match for two runs' timings to be comparable: the "same machine"."""
    cuda = env.get("cuda") or {}
    return {
        "cpu": env.get("cpu_model"),
        "gpus": [d.get("name") for d in cuda.get("devices", [])],
        "cuda": cuda.get("version"),
        "torch": env.get("torch"),
        "triton": (env.get("packages") or {}).get("triton"),
        "threads": env.get("torch_threads"),
    }


def machine_label(env: Mapping[str, Any]) -> str:
    facts = machine_facts(env)
    devices = ", ".join(facts["gpus"]) or facts["cpu"]
    return f"{env.get('host')}: {devices}, torch {facts['torch']}, {facts['threads']} threads"


@dataclass(frozen=True)
class TestedRevision:
    """The revision of the code a run measured: its first plugin's repository and commit, or,
    without a plugin in a repository, the suite's own checkout (the suite is then the code
    under test)."""

    commit: str | None
    repository: str | None
    dirty: bool | None
    what: str  # "plugin my_blocks.py" or "the suite"

    @property
    def label(self) -> str:
        if self.commit is None:
            return f"{self.what}: no git commit"
        return f"{self.what} at {self.commit[:10]}{' (dirty)' if self.dirty else ''}"


def tested_revision(env: Mapping[str, Any]) -> TestedRevision:
    """Which code a run measured, from its env.json (see `TestedRevision`)."""
    for plugin in env.get("code_under_test") or []:
        if plugin.get("commit"):
            return TestedRevision(plugin["commit"], plugin.get("repository"),
                                  plugin.get("dirty"), f"plugin {plugin['plugin']}")  # fmt: skip
    suite = env.get("suite") or {}
    return TestedRevision(env.get("git_commit"), suite.get("location"), env.get("git_dirty"),
                          "the suite")  # fmt: skip


def provenance_lines(env: Mapping[str, Any]) -> list[str]:
    """What a run measured, a line each: the suite's version and revision, then every plugin
    with its repository, commit, dirty state and files' hash."""
    suite = env.get("suite") or {}
    commit = env.get("git_commit")
    lines = [
        f"suite: cnn-attention-bench {suite.get('version') or '(version unknown)'}"
        + (f" at {commit[:10]}{' (dirty)' if env.get('git_dirty') else ''}" if commit else
           " (installed package, no checkout)")
    ]  # fmt: skip
    for plugin in env.get("code_under_test") or []:
        where = (
            f"{plugin['repository']} at {plugin['commit'][:10]}"
            f"{' (dirty)' if plugin.get('dirty') else ''}"
            if plugin.get("commit")
            else "not in a git repository"
        )
        digest = (plugin.get("files_sha256") or "")[:12] or "-"
        lines.append(f"code under test: plugin {plugin['plugin']}: {where}; files sha256 {digest}")
    instrument = env.get("instrument") or {}
    if instrument.get("instrument") == "simulated":
        lines.append(
            f"instrument: simulated, {instrument.get('valgrind')} callgrind, one thread, "
            f"CPU kernels {env.get('simulated_cpu_capability', '?')}"
        )
    return lines


def machine_differences(
    first: Mapping[str, Any], second: Mapping[str, Any], *, code: bool = False
) -> dict[str, tuple[Any, Any]]:
    """The machine facts (and with `code`, the git commit) where two env.json differ."""
    a, b = machine_facts(first), machine_facts(second)
    if code:
        a["git commit"], b["git commit"] = first.get("git_commit"), second.get("git_commit")
    return {key: (a[key], b[key]) for key in a if a[key] != b[key]}


# ---- rows ------------------------------------------------------------------------------------


def result_row(case: Case, run_id: str, seed: int, **outcome: Any) -> dict[str, Any]:
    """A results.csv row: the case's identity, then what happened (`status`, `error`, ...)."""
    row = {
        "run_id": run_id, "case_id": case.case_id, "role": case.role, "model": case.model,
        "variant": case.variant.name, "options": case.variant.options_label,
        "variant_label": case.variant.label, "batch": case.batch, "channels": case.channels,
        "height": case.height, "width": case.width, "dtype": case.dtype, "device": case.device,
        "mode": case.mode, "memory_format": case.memory_format, "compile": case.compile,
        "launch": case.launch, "seed": seed,
    }  # fmt: skip
    unknown = set(outcome) - set(COLUMNS)
    if unknown:
        raise KeyError(f"not a results column: {sorted(unknown)}")
    row.update(outcome)
    return row


def measured_fields(measured: CaseMeasurement, batch: int) -> dict[str, Any]:
    """The result row's measured columns, from the measurement's typed record."""
    m = measured.timing
    low, high = m.ci
    with_ci = m.n >= MIN_SAMPLES_FOR_CI
    compiled = measured.compile_stats
    return {
        "threads": m.threads, "latency_median_s": m.median, "latency_iqr_s": m.iqr,
        "latency_ci_low_s": low if with_ci else None, "latency_ci_high_s": high if with_ci else None,
        "latency_mean_s": m.mean, "latency_std_s": m.std, "n_samples": m.n,
        "rounds": len(set(m.rounds)), "block_size": m.block_size, "stop_reason": m.stop_reason,
        "images_per_s": batch / m.median, "quality": quality_text(measured.flags),
        "other_cpu_share": None if measured.cpu_load is None else measured.cpu_load.other_share,
        "compile_graphs": None if compiled is None else compiled.graphs,
        "compile_graph_breaks": None if compiled is None else compiled.graph_breaks,
        **_exact_fields(measured.counts, measured.peak_memory_bytes, measured.params),
        **_rotation_fields(measured.rotation),
    }  # fmt: skip


def _rotation_fields(rotation: Rotation | None) -> dict[str, Any]:
    if rotation is None:
        return {}
    return {
        "graph_copies": rotation.copies, "graph_rotated_bytes": rotation.rotated_bytes,
        "l2_bytes": rotation.l2_bytes,
    }  # fmt: skip


def _exact_fields(c: Counts, peak_memory_bytes: int, params: int) -> dict[str, Any]:
    """The columns measured once per case, whatever the instrument."""
    return {
        "flops": c.flops, "macs": c.macs, "bytes_read": c.bytes_read,
        "bytes_written": c.bytes_written, "bytes_moved": c.bytes_moved,
        "unscored_ops": " ".join(sorted(c.unscored_ops)),
        "peak_memory_bytes": peak_memory_bytes, "params": params,
    }  # fmt: skip


def simulated_fields(
    counted: list[SimulatedCounts], prepared: PreparedCase, threads: int | None
) -> dict[str, Any]:
    """The result row's measured columns of a case counted under valgrind (no time)."""
    median = median_call(counted)
    return {
        "threads": threads, "n_samples": len(counted), "rounds": 1,
        "instructions": median.instructions, "l1_misses": median.l1_misses,
        "ll_misses": median.ll_misses, "estimated_cycles": median.estimated_cycles,
        "ll_bytes": median.ll_bytes,
        "cycles_spread": relative_spread([call.estimated_cycles for call in counted]),
        "quality": quality_text([]),
        **_exact_fields(prepared.counts, prepared.peak_memory_bytes, prepared.params),
    }  # fmt: skip


# ---- writing helpers -------------------------------------------------------------------------


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and a rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _dump_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"


def _repair_partial_last_line(path: Path) -> None:
    """Drop a row cut short by a crash mid-write (no final newline)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def _append_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    new_file = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="raise")
        if new_file:
            writer.writeheader()
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())


# ---- the directory ---------------------------------------------------------------------------


class RunDirectory:
    """One run's directory; rows and samples are appended and flushed case by case."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    # -- what is there
    @property
    def traces(self) -> Path:
        return self.path / "traces"

    @property
    def shards_dir(self) -> Path:
        """Where a sharded sweep keeps its shards' run directories."""
        return self.path / _SHARDS

    def shard_dir(self, shard: Shard) -> RunDirectory:
        return RunDirectory(self.shards_dir / shard.name)

    @property
    def started(self) -> bool:
        """A process began this run (run.json is written first)."""
        return (self.path / _INFO).exists()

    @property
    def has_results(self) -> bool:
        return (self.path / _RESULTS).exists()

    @property
    def has_spec(self) -> bool:
        return (self.path / _SPEC).exists()

    @property
    def has_env(self) -> bool:
        return (self.path / _ENV).exists()

    @staticmethod
    def holds_run(path: str | Path) -> bool:
        """Whether `path` is a run directory (it has a results table)."""
        return (Path(path) / _RESULTS).exists()

    # -- spec.yaml, env.json, run.json
    def spec(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / _SPEC).read_text())

    def env(self) -> dict[str, Any]:
        return self._read_json(_ENV)

    def info(self) -> dict[str, Any]:
        return self._read_json(_INFO)

    @property
    def run_id(self) -> str:
        return self.info()["run_id"]

    @property
    def status(self) -> str | None:
        """running, complete, interrupted or incomplete; None before a run has begun."""
        return self.info().get("status") if self.started else None

    @property
    def shard(self) -> Shard | None:
        """The shard this run directory holds (None: the whole sweep)."""
        label = self.info().get("shard")
        return Shard.parse(label) if label else None

    def _read_json(self, name: str) -> dict[str, Any]:
        return json.loads((self.path / name).read_text())

    def create(
        self, spec: dict[str, Any], env: dict[str, Any], run_id: str, shard: Shard | None = None
    ) -> None:
        if self.has_results:
            raise FileExistsError(f"{self.path} already holds a run; use --resume {self.path}")
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path / _SPEC, yaml.safe_dump(spec, sort_keys=False))
        write_atomic(self.path / _ENV, _dump_json(env))
        info = {"run_id": run_id, "schema_version": SCHEMA_VERSION, "status": "running",
                "started_utc": utc_now()}  # fmt: skip
        if shard is not None:
            info["shard"] = shard.label
        self.update_info(**info)
        _append_csv(self.path / _RESULTS, COLUMNS, [])  # a run (or shard) with no cases is one

    def update_info(self, **fields: Any) -> None:
        self._update_json(_INFO, fields)

    def update_env(self, **fields: Any) -> None:
        self._update_json(_ENV, fields)

    def _update_json(self, name: str, fields: dict[str, Any]) -> None:
        path = self.path / name
        info = json.loads(path.read_text()) if path.exists() else {}
        info.update(fields)
        write_atomic(path, _dump_json(info))

    # -- rows, samples, ceilings
    def append_row(self, row: dict[str, Any]) -> None:
        _append_csv(self.path / _RESULTS, COLUMNS, [row])

    def append_samples(self, run_id: str, case_id: str, measurement: Measurement) -> None:
        """Every sample of a case, with its round, its block size and its paired reference."""
        samples = measurement.samples_s
        references = measurement.reference_samples_s or [""] * len(samples)
        rows = [
            {"run_id": run_id, "case_id": case_id, "sample": i, "round": r,
             "seconds_per_call": s, "block_size": b, "reference_seconds_per_call": ref}
            for i, (s, r, b, ref) in enumerate(zip(
                samples, measurement.rounds, measurement.block_sizes, references, strict=True
            ))
        ]  # fmt: skip
        _append_csv(self.path / _SAMPLES, SAMPLE_COLUMNS, rows)

    def append_ceilings(self, row: dict[str, Any]) -> None:
        _append_csv(self.path / _CEILINGS, list(row), [row])

    def ceilings(self) -> pd.DataFrame | None:
        """The roofline ceilings per device and dtype, or None where none were measured."""
        path = self.path / _CEILINGS
        return pd.read_csv(path) if path.exists() else None

    @staticmethod
    def copy_ladder(ceiling: pd.Series) -> list[tuple[float, float]]:
        """A ceilings row's copy ladder: (working-set bytes, bytes/s), small to large; a run
        measured before the ladder existed has its one large copy."""
        text = ceiling.get("copy_ladder")
        if isinstance(text, str) and text:
            return [(float(size), float(speed)) for size, speed in json.loads(text)]
        return [(2.0 * ceiling["copy_bytes"], float(ceiling["memory_bandwidth_bytes_per_s"]))]

    def recorded_ceilings(self) -> set[tuple[str, str]]:
        """(device, dtype) pairs whose ceilings are measured already."""
        frame = self.ceilings()
        return set() if frame is None else set(zip(frame.device, frame.dtype, strict=True))

    def results(self) -> pd.DataFrame:
        return read_results(self.path)

    def write_kernel_traffic(self, records: list[dict[str, Any]]) -> None:
        """The fused rows' counted kernel bytes (bench.measurement.kernel_traffic), by case_id."""
        write_atomic(self.path / _KERNEL_TRAFFIC, pd.DataFrame(records).to_csv(index=False))

    def kernel_traffic(self) -> pd.DataFrame | None:
        path = self.path / _KERNEL_TRAFFIC
        return pd.read_csv(path) if path.exists() else None

    def samples(self) -> pd.DataFrame:
        return read_samples(self.path)

    def has_samples(self) -> bool:
        return (self.path / _SAMPLES).exists()

    # -- the case in flight: on disk before it runs, so a process death leaves its name
    def mark_in_progress(self, case_id: str, label: str) -> None:
        flight = {"case_id": case_id, "label": label, "pid": os.getpid(), "since": utc_now()}
        write_atomic(self.path / _IN_PROGRESS, json.dumps(flight))

    def clear_in_progress(self) -> None:
        (self.path / _IN_PROGRESS).unlink(missing_ok=True)

    def in_progress(self) -> dict[str, Any] | None:
        """The case a process was running when it stopped, if it died mid-case."""
        path = self.path / _IN_PROGRESS
        return json.loads(path.read_text()) if path.exists() else None

    # -- what is recorded, and taking rows back
    def recorded_statuses(self) -> dict[str, str]:
        """case_id -> status of every recorded row."""
        results = self.path / _RESULTS
        _repair_partial_last_line(results)
        _repair_partial_last_line(self.path / _SAMPLES)
        if not results.exists():
            return {}
        with results.open(newline="") as handle:
            return {row["case_id"]: row["status"] for row in csv.DictReader(handle)}

    def drop_rows(self, case_ids: set[str]) -> None:
        """Remove these cases' rows and samples (to run them again), atomically."""
        for path in (self.path / _RESULTS, self.path / _SAMPLES):
            if path.exists():
                frame = pd.read_csv(path, keep_default_na=False, dtype=str)
                write_atomic(path, frame[~frame["case_id"].isin(case_ids)].to_csv(index=False))

    def drop_orphan_samples(self) -> None:
        """Samples of a case whose row was never written (the process died in between)."""
        path = self.path / _SAMPLES
        if not path.exists():
            return
        with path.open(newline="") as handle:
            sampled = {row["case_id"] for row in csv.DictReader(handle)}
        orphans = sampled - set(self.recorded_statuses())
        if orphans:
            self.drop_rows(orphans)

    def write_parquet(self, frame: pd.DataFrame | None = None) -> Path | None:
        """results.parquet from `frame` (the rows as read already), or from results.csv."""
        if not self.has_results:
            return None
        frame = read_results(self.path) if frame is None else frame
        target = self.path / _PARQUET
        tmp = target.with_name(f".{_PARQUET}.tmp")
        _stored(frame).to_parquet(tmp, index=False)
        os.replace(tmp, target)
        return target

    # -- a run written whole (a merge of shards)
    def write_whole(
        self,
        *,
        spec: dict[str, Any],
        env: dict[str, Any],
        info: dict[str, Any],
        results: pd.DataFrame,
        samples: pd.DataFrame | None,
        ceilings: pd.DataFrame | None,
    ) -> None:
        """Every file of a run at once, each atomically; run.json last, so a reader that sees
        it sees the rest."""
        if self.has_results:
            raise RunDirectoryError(f"{self.path} already holds a run; write into a new one")
        if samples is not None:
            write_atomic(self.path / _SAMPLES, samples[SAMPLE_COLUMNS].to_csv(index=False))
        if ceilings is not None:
            write_atomic(self.path / _CEILINGS, ceilings.to_csv(index=False))
        write_atomic(self.path / _RESULTS, _stored(results).to_csv(index=False))
        write_atomic(self.path / _SPEC, yaml.safe_dump(spec, sort_keys=False))
        write_atomic(self.path / _ENV, _dump_json(env))
        write_atomic(self.path / _INFO, _dump_json({"schema_version": SCHEMA_VERSION, **info}))
        self.write_parquet()

    def keep_shard_files(self, name: str, shard: RunDirectory) -> None:
        """A merged shard's env.json and run.json under shards/<name>/."""
        keep = self.shards_dir / name
        if keep.resolve() == shard.path.resolve():
            return
        keep.mkdir(parents=True, exist_ok=True)
        for file in (_ENV, _INFO):
            shutil.copyfile(shard.path / file, keep / file)


def _stored(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns a results file holds: the stored ones, in order (no derived columns)."""
    extra = [MACHINE_COLUMN] if MACHINE_COLUMN in frame else []
    return frame[[c for c in COLUMNS if c in frame] + extra]


# ---- typed readers ---------------------------------------------------------------------------


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for column in RESULT_COLUMNS:
        if column.name not in frame:  # a run written before the column existed: empty
            frame[column.name] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        values = frame[column.name]
        if column.type == "int":
            frame[column.name] = pd.to_numeric(values, errors="coerce").astype("Int64")
        elif column.type == "float":
            frame[column.name] = pd.to_numeric(values, errors="coerce").astype(float)
        elif column.type == "bool":
            frame[column.name] = values.astype(str).str.lower().eq("true")
        else:
            frame[column.name] = values.astype(object).where(values.notna(), None)
    # a run from before the launch axis launched every call eagerly
    frame["launch"] = frame["launch"].where(frame["launch"].notna(), "eager")
    return frame


def read_results(run_dir: str | Path) -> pd.DataFrame:
    """results.csv of a run directory, typed as `RESULT_COLUMNS` says, with the derived
    `label` (the case's label) and `quality_flags` (a tuple) beside; a clear error
    if it is not one."""
    path = Path(run_dir)
    csv_path = path / _RESULTS
    if not path.is_dir():
        raise RunDirectoryError(f"{path} is not a directory; expected a run directory")
    if not csv_path.exists():
        raise RunDirectoryError(f"{path} has no {_RESULTS}; is it a run directory?")
    try:
        frame = pd.read_csv(csv_path, keep_default_na=False, na_values=[""], dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise RunDirectoryError(f"{csv_path} is malformed: {error}") from error
    missing = [c for c in ("case_id", "variant", "status") if c not in frame.columns]
    if missing:
        raise RunDirectoryError(f"{csv_path} lacks columns {missing}; not a results table")
    frame = _typed(frame)
    frame["label"] = [case_label(row) for row in frame.to_dict("records")]
    quality = frame["quality"] if "quality" in frame else pd.Series(None, index=frame.index)
    frame["quality_flags"] = [quality_flags(q) for q in quality]
    return frame


def read_samples(run_dir: str | Path) -> pd.DataFrame:
    """samples.csv of a run directory: one row per timing sample."""
    path = Path(run_dir) / _SAMPLES
    if not path.exists():
        raise RunDirectoryError(f"{path.parent} has no {_SAMPLES}")
    return pd.read_csv(path)


def quality_warnings(results: pd.DataFrame) -> list[dict[str, Any]]:
    """run.json's summary of the quality flags: one entry per flag, with how many rows carry it."""
    counts = pd.Series([f for flags in results["quality_flags"] for f in flags]).value_counts()
    return [{"flag": flag, "rows": int(counts[flag])} for flag in FLAGS if flag in counts]
