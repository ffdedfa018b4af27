"""`python -m bench merge RUN_DIR... --out DIR`: one run directory from the shards of a sweep.

Rows and samples are joined, each case once; `spec.yaml` is the shards' common spec; each
shard's `env.json` and `run.json` are kept under `shards/<name>/` and summarised in `run.json`.
Shards must share what they measure (their spec, less the `executor:` block, which says how a
sweep was carried out, not what it measures) and, unless `allow_mixed`, their machine (see
`rundir.machine_facts`); mixed shards get a `machine` column, which the report draws apart. The
merged run is `complete` only when every shard of the partition is there and each shard's own
run says complete: a missing shard, or one that stopped part-way (killed, interrupted, still
running), is named, and what is there still merges, marked `incomplete`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .rundir import (
    MACHINE_COLUMN,
    RunDirectory,
    RunDirectoryError,
    machine_differences,
    machine_facts,
    machine_label,
    new_run_id,
    quality_warnings,
    utc_now,
)
from .shards import Shard

# the columns that hold a measurement: two copies of a case that differ here are two runs
MEASURED = ("status", "latency_median_s", "n_samples", "flops", "peak_memory_bytes")
# spec keys that say how a sweep is carried out, not what it measures
HOW_NOT_WHAT = ("executor",)


class MergeError(ValueError):
    """Shards that cannot be merged (exit code 2), with what differs."""


@dataclass
class ShardRun:
    """A shard's run directory, loaded."""

    run_dir: RunDirectory
    spec: dict[str, Any]
    env: dict[str, Any]
    info: dict[str, Any]
    results: pd.DataFrame

    @property
    def path(self) -> Path:
        return self.run_dir.path

    @property
    def shard(self) -> Shard | None:
        label = self.info.get("shard")
        return Shard.parse(label) if label else None

    @property
    def name(self) -> str:
        return self.path.name if self.shard is None else self.shard.name

    @property
    def measured_spec(self) -> dict[str, Any]:
        return {k: v for k, v in self.spec.items() if k not in HOW_NOT_WHAT}


@dataclass
class MergeSummary:
    out: Path
    cases: int
    shards: list[str]
    missing: list[str] = field(default_factory=list)
    partial: dict[str, str] = field(default_factory=dict)  # shard name -> its own status
    mixed: bool = False

    @property
    def complete(self) -> bool:
        return not self.missing and not self.partial

    @property
    def exit_code(self) -> int:
        """0: every shard there and complete; 1: merged, but incomplete."""
        return 0 if self.complete else 1

    def line(self) -> str:
        gaps = [f"missing {', '.join(self.missing)}"] if self.missing else []
        gaps += [f"{name} {status}" for name, status in self.partial.items()]
        state = f"incomplete ({'; '.join(gaps)})" if gaps else "complete"
        return f"merged {len(self.shards)} shard(s), {self.cases} cases, {state}: {self.out}"


def _load(path: Path) -> ShardRun:
    run_dir = RunDirectory(path)
    try:
        return ShardRun(run_dir, run_dir.spec(), run_dir.env(), run_dir.info(), run_dir.results())
    except (OSError, json.JSONDecodeError, yaml.YAMLError, RunDirectoryError) as error:
        raise MergeError(f"{path}: not a complete run directory ({error})") from error


def _differences(name: str, shards: list[ShardRun], facts) -> list[str]:
    first = facts(shards[0])
    lines = []
    for shard in shards[1:]:
        other = facts(shard)
        for key in sorted(set(first) | set(other)):
            if first.get(key) != other.get(key):
                lines.append(
                    f"{name} {key}: {shards[0].path} has {first.get(key)!r}, "
                    f"{shard.path} has {other.get(key)!r}"
                )
    return lines


def merge(paths: list[str | Path], out: str | Path, *, allow_mixed: bool = False) -> MergeSummary:
    """Merge run directories (the shards of one sweep) into `out` (see the module docstring)."""
    if not paths:
        raise MergeError("no run directory to merge")
    shards = [_load(Path(p)) for p in paths]
    problems = _differences("spec", shards, lambda s: s.measured_spec)
    mixed = any(machine_differences(shards[0].env, s.env) for s in shards[1:])
    if mixed and not allow_mixed:
        problems += _differences("machine", shards, lambda s: machine_facts(s.env))
        problems.append("(--allow-mixed merges them anyway, with a `machine` column per row)")
    counts = {s.shard.count for s in shards if s.shard is not None}
    if len(counts) > 1:
        problems.append(
            f"shards of different partitions: 1/{' and 1/'.join(map(str, sorted(counts)))}"
        )
    rows, owner = [], {}
    for shard in shards:
        frame = shard.results.copy()
        if mixed:
            frame[MACHINE_COLUMN] = machine_label(shard.env)
        for _, row in frame.iterrows():
            earlier = owner.get(row["case_id"])
            if earlier is None:
                owner[row["case_id"]] = (shard, row)
                rows.append(row)
            elif not row[list(MEASURED)].equals(earlier[1][list(MEASURED)]):
                problems.append(
                    f"case {row['label']} ({row['case_id']}) is in {earlier[0].path} and "
                    f"{shard.path} with different data: shards must not overlap"
                )
    if problems:
        raise MergeError("cannot merge:\n  " + "\n  ".join(dict.fromkeys(problems)))

    target = RunDirectory(out)
    if target.has_results:
        raise MergeError(f"{target.path} already holds a run; merge into a new directory")
    missing = []
    if counts:
        count = next(iter(counts))
        present = {s.name for s in shards}
        missing = [Shard(k, count).name for k in range(1, count + 1)
                   if Shard(k, count).name not in present]  # fmt: skip
    partial = {s.name: str(s.info.get("status")) for s in shards
               if s.info.get("status") != "complete"}  # fmt: skip
    merged = pd.DataFrame(rows).reset_index(drop=True)
    summary = MergeSummary(target.path, len(merged), [s.name for s in shards], missing, partial,
                           mixed)  # fmt: skip
    _write(target, shards, merged, summary)
    return summary


def _write(target: RunDirectory, shards: list[ShardRun], merged: pd.DataFrame,
           summary: MergeSummary) -> None:  # fmt: skip
    kept = set(merged["case_id"])
    samples = [s.run_dir.samples() for s in shards if s.run_dir.has_samples()]
    joined = None
    if samples:
        joined = pd.concat(samples).drop_duplicates(["case_id", "sample"])
        joined = joined[joined["case_id"].isin(kept)]
    ceilings = [
        c.assign(**({MACHINE_COLUMN: machine_label(s.env)} if summary.mixed else {}))
        for s in shards
        if (c := s.run_dir.ceilings()) is not None
    ]
    keys = ["device", "dtype", *([MACHINE_COLUMN] if summary.mixed else [])]
    run_id = new_run_id()
    merged["run_id"] = run_id
    env = dict(shards[0].env)
    env["shards"] = {s.name: machine_label(s.env) for s in shards}
    info = {
        "run_id": run_id,
        "status": "complete" if summary.complete else "incomplete",
        "finished_utc": utc_now(),
        "merged_from": [
            {
                "shard": s.name,
                "path": str(s.path),
                "status": s.info.get("status"),
                "cases": len(s.results),
            }
            for s in shards
        ],
        "missing_shards": summary.missing,
        "partial_shards": summary.partial,
        "mixed_machines": summary.mixed,
        "cases_recorded": len(merged),
        "warnings": quality_warnings(merged),
    }
    for shard in shards:
        target.keep_shard_files(shard.name, shard.run_dir)
    target.write_whole(
        spec=shards[0].measured_spec,
        env=env,
        info=info,
        results=merged,
        samples=joined,
        ceilings=pd.concat(ceilings).drop_duplicates(keys) if ceilings else None,
    )
