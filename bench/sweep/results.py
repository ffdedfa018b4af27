"""The run directory: what a sweep asked, ran on and measured, written as it goes.

Layout (see results/README.md): spec.yaml, env.json, run.json, results.csv (a row appended and
flushed per case), samples.csv (every timing sample, long format), results.parquet (at the end),
traces/, tables/, plots/.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..measurement.quality import FLAGS
from ..measurement.timing import Measurement

SCHEMA_VERSION = 2  # 2: quality, rounds and compile columns; a round per sample

COLUMNS = [
    "run_id", "case_id", "role", "model", "variant", "options", "variant_label", "batch",
    "channels", "height", "width", "dtype", "device", "mode", "memory_format", "compile",
    "threads", "status", "error", "latency_median_s", "latency_iqr_s", "latency_ci_low_s",
    "latency_ci_high_s", "latency_mean_s", "latency_std_s", "n_samples", "block_size",
    "rounds", "stop_reason", "images_per_s", "quality", "other_cpu_share", "compile_graphs",
    "compile_graph_breaks", "flops", "macs", "bytes_read", "bytes_written",
    "bytes_moved", "peak_memory_bytes", "params", "unscored_ops", "seed", "wall_time_s",
]  # fmt: skip
SAMPLE_COLUMNS = [
    "run_id",
    "case_id",
    "sample",
    "round",  # each round a separate stretch of time on a fresh copy of the input
    "seconds_per_call",
    "block_size",
    "reference_seconds_per_call",
]  # the paired copy's sample taken right after


def new_run_id() -> str:
    """``<UTC time>-<short random id>``: sorts by time, unique across machines."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{secrets.token_hex(3)}"


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


def _repair_partial_last_line(path: Path) -> None:
    """Drop a row cut short by a crash mid-write (no final newline)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


class RunDirectory:
    """One run's directory; rows and samples are appended and flushed case by case."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- files
    @property
    def results_csv(self) -> Path:
        return self.path / "results.csv"

    @property
    def samples_csv(self) -> Path:
        return self.path / "samples.csv"

    @property
    def ceilings_csv(self) -> Path:
        return self.path / "ceilings.csv"

    @property
    def traces(self) -> Path:
        return self.path / "traces"

    def read_json(self, name: str) -> dict[str, Any]:
        return json.loads((self.path / name).read_text())

    @property
    def run_id(self) -> str:
        return self.read_json("run.json")["run_id"]

    # -- writing
    def create(self, spec: dict[str, Any], env: dict[str, Any], run_id: str) -> None:
        if self.results_csv.exists():
            raise FileExistsError(f"{self.path} already holds a run; use --resume {self.path}")
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path / "spec.yaml", yaml.safe_dump(spec, sort_keys=False))
        write_atomic(self.path / "env.json", json.dumps(env, indent=2, default=str) + "\n")
        self.update_run_info(
            run_id=run_id, schema_version=SCHEMA_VERSION, status="running", started_utc=_now()
        )
        _append_csv(self.results_csv, COLUMNS, [])  # a run (or shard) with no cases is one too

    def update_run_info(self, **fields: Any) -> None:
        self._update_json("run.json", fields)

    def update_env(self, **fields: Any) -> None:
        self._update_json("env.json", fields)

    def _update_json(self, name: str, fields: dict[str, Any]) -> None:
        path = self.path / name
        info = json.loads(path.read_text()) if path.exists() else {}
        info.update(fields)
        write_atomic(path, json.dumps(info, indent=2, default=str) + "\n")

    def append_row(self, row: dict[str, Any]) -> None:
        _append_csv(self.results_csv, COLUMNS, [row])

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
        _append_csv(self.samples_csv, SAMPLE_COLUMNS, rows)

    def append_ceilings(self, row: dict[str, Any]) -> None:
        _append_csv(self.ceilings_csv, list(row), [row])

    def recorded_ceilings(self) -> set[tuple[str, str]]:
        """(device, dtype) pairs whose ceilings are measured already."""
        if not self.ceilings_csv.exists():
            return set()
        frame = pd.read_csv(self.ceilings_csv)
        return set(zip(frame.device, frame.dtype, strict=True))

    # -- the case in flight: on disk before it runs, so a process death leaves its name
    @property
    def in_progress_json(self) -> Path:
        return self.path / "in_progress.json"

    def mark_in_progress(self, case_id: str, label: str) -> None:
        write_atomic(
            self.in_progress_json,
            json.dumps({"case_id": case_id, "label": label, "pid": os.getpid(), "since": _now()}),
        )

    def clear_in_progress(self) -> None:
        self.in_progress_json.unlink(missing_ok=True)

    def in_progress(self) -> dict[str, Any] | None:
        """The case a process was running when it stopped, if it died mid-case."""
        if not self.in_progress_json.exists():
            return None
        return json.loads(self.in_progress_json.read_text())

    def drop_rows(self, case_ids: set[str]) -> None:
        """Remove these cases' rows and samples (to run them again), atomically."""
        for path in (self.results_csv, self.samples_csv):
            if path.exists():
                frame = pd.read_csv(path, keep_default_na=False, dtype=str)
                write_atomic(path, frame[~frame["case_id"].isin(case_ids)].to_csv(index=False))

    def drop_orphan_samples(self) -> None:
        if not self.samples_csv.exists():
            return
        with self.samples_csv.open(newline="") as handle:
            sampled = {row["case_id"] for row in csv.DictReader(handle)}
        orphans = sampled - set(self.recorded_statuses())
        if orphans:
            self.drop_rows(orphans)

    def recorded_statuses(self) -> dict[str, str]:
        """case_id -> status of every recorded row."""
        _repair_partial_last_line(self.results_csv)
        _repair_partial_last_line(self.samples_csv)
        if not self.results_csv.exists():
            return {}
        with self.results_csv.open(newline="") as handle:
            return {row["case_id"]: row["status"] for row in csv.DictReader(handle)}

    def recorded_case_ids(self) -> set[str]:
        _repair_partial_last_line(self.results_csv)
        _repair_partial_last_line(self.samples_csv)
        if not self.results_csv.exists():
            return set()
        with self.results_csv.open(newline="") as handle:
            return {row["case_id"] for row in csv.DictReader(handle)}

    def write_parquet(self, frame: pd.DataFrame | None = None) -> Path | None:
        """results.parquet from `frame` (the rows as read already), or from results.csv."""
        if not self.results_csv.exists():
            return None
        frame = read_results(self.path) if frame is None else frame
        target = self.path / "results.parquet"
        tmp = target.with_name(".results.parquet.tmp")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, target)
        return target


def _append_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    new_file = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="raise")
        if new_file:
            writer.writeheader()
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RunDirectoryError(ValueError):
    """A run directory that is missing or malformed."""


def read_results(run_dir: str | Path) -> pd.DataFrame:
    """results.csv of a run directory as a DataFrame, with a clear error if it is not one."""
    path = Path(run_dir)
    csv_path = path / "results.csv"
    if not path.is_dir():
        raise RunDirectoryError(f"{path} is not a directory; expected a run directory")
    if not csv_path.exists():
        raise RunDirectoryError(f"{path} has no results.csv; is it a run directory?")
    try:
        frame = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise RunDirectoryError(f"{csv_path} is malformed: {error}") from error
    missing = [c for c in ("case_id", "variant", "status") if c not in frame.columns]
    if missing:
        raise RunDirectoryError(f"{csv_path} lacks columns {missing}; not a results table")
    return frame


def quality_warnings(results: pd.DataFrame) -> list[dict[str, Any]]:
    """run.json's summary of the quality flags: one entry per flag, with how many rows carry it."""
    if "quality" not in results:
        return []
    flags = results["quality"].astype("string").fillna("ok").str.split(";").explode()
    counts = flags[flags != "ok"].value_counts()
    return [{"flag": flag, "rows": int(counts[flag])} for flag in FLAGS if flag in counts]


def read_samples(run_dir: str | Path) -> pd.DataFrame:
    """samples.csv of a run directory: one row per timing sample."""
    path = Path(run_dir) / "samples.csv"
    if not path.exists():
        raise RunDirectoryError(f"{path.parent} has no samples.csv")
    return pd.read_csv(path)
