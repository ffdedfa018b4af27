"""`python -m bench merge RUN_DIR... --out DIR`: one run directory from the shards of a sweep.

Rows and samples are joined, each case once; `spec.yaml` is the shards' common spec; each
shard's `env.json` and `run.json` are kept under `shards/<name>/` and summarised in `run.json`.
Shards must share their spec and, unless `allow_mixed`, their machine (device and CPU names,
CUDA, torch and triton versions, thread count); mixed shards get a `machine` column, which the
report draws apart. A missing shard is named, and what is there still merges, marked incomplete.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .results import (
    SCHEMA_VERSION,
    RunDirectory,
    RunDirectoryError,
    new_run_id,
    quality_warnings,
    read_results,
    write_atomic,
)

# the columns that hold a measurement: two copies of a case that differ here are two runs
MEASURED = ("status", "latency_median_s", "n_samples", "flops", "peak_memory_bytes")


class MergeError(ValueError):
    """Shards that cannot be merged (exit code 2), with what differs."""


def machine_of(env: dict[str, Any]) -> dict[str, Any]:
    """What must match for timings to be comparable."""
    cuda = env.get("cuda", {})
    return {
        "cpu": env.get("cpu_model"),
        "gpus": [d.get("name") for d in cuda.get("devices", [])],
        "cuda": cuda.get("version"),
        "torch": env.get("torch"),
        "triton": (env.get("packages") or {}).get("triton"),
        "threads": env.get("torch_threads"),
    }


def machine_label(env: dict[str, Any]) -> str:
    facts = machine_of(env)
    devices = ", ".join(facts["gpus"]) or facts["cpu"]
    return f"{env.get('host')}: {devices}, torch {facts['torch']}, {facts['threads']} threads"


@dataclass
class ShardRun:
    """A shard's run directory, loaded."""

    path: Path
    spec: dict[str, Any]
    env: dict[str, Any]
    info: dict[str, Any]
    results: pd.DataFrame

    @property
    def name(self) -> str:
        label = self.info.get("shard")
        if not label:
            return self.path.name
        index, count = label.split("/")
        return f"shard-{index}-of-{count}"


@dataclass
class MergeSummary:
    out: Path
    cases: int
    shards: list[str]
    missing: list[str] = field(default_factory=list)
    mixed: bool = False

    @property
    def exit_code(self) -> int:
        """0: every shard was there; 1: merged, but incomplete."""
        return 1 if self.missing else 0

    def line(self) -> str:
        state = f"incomplete (missing {', '.join(self.missing)})" if self.missing else "complete"
        return f"merged {len(self.shards)} shard(s), {self.cases} cases, {state}: {self.out}"


def _load(path: Path) -> ShardRun:
    run_dir = RunDirectory(path)
    try:
        spec = yaml.safe_load((path / "spec.yaml").read_text())
        env, info = run_dir.read_json("env.json"), run_dir.read_json("run.json")
        results = read_results(path)
    except (OSError, json.JSONDecodeError, RunDirectoryError) as error:
        raise MergeError(f"{path}: not a complete run directory ({error})") from error
    return ShardRun(path, spec, env, info, results)


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
    problems = _differences("spec", shards, lambda s: s.spec)
    mixed = bool(_differences("machine", shards, lambda s: machine_of(s.env)))
    if mixed and not allow_mixed:
        problems += _differences("machine", shards, lambda s: machine_of(s.env))
        problems.append("(--allow-mixed merges them anyway, with a `machine` column per row)")
    counts = {s.info["shard"].split("/")[1] for s in shards if s.info.get("shard")}
    if len(counts) > 1:
        problems.append(f"shards of different partitions: 1/{' and 1/'.join(sorted(counts))}")
    rows, owner = [], {}
    for shard in shards:
        frame = shard.results.copy()
        if mixed:
            frame["machine"] = machine_label(shard.env)
        for _, row in frame.iterrows():
            earlier = owner.get(row["case_id"])
            if earlier is None:
                owner[row["case_id"]] = (shard, row)
                rows.append(row)
            elif not row[list(MEASURED)].equals(earlier[1][list(MEASURED)]):
                problems.append(
                    f"case {row['variant_label']} ({row['case_id']}) is in {earlier[0].path} and "
                    f"{shard.path} with different data: shards must not overlap"
                )
    if problems:
        raise MergeError("cannot merge:\n  " + "\n  ".join(dict.fromkeys(problems)))

    out = Path(out)
    if (out / "results.csv").exists():
        raise MergeError(f"{out} already holds a run; merge into a new directory")
    out.mkdir(parents=True, exist_ok=True)
    missing = []
    if counts:
        count = int(next(iter(counts)))
        present = {s.name for s in shards}
        missing = [f"shard-{k}-of-{count}" for k in range(1, count + 1) if
                   f"shard-{k}-of-{count}" not in present]  # fmt: skip
    merged = pd.DataFrame(rows).reset_index(drop=True)
    _write(out, shards, merged, missing, mixed)
    return MergeSummary(out, len(merged), [s.name for s in shards], missing, mixed)


def _write(out: Path, shards: list[ShardRun], merged: pd.DataFrame, missing, mixed) -> None:
    kept = set(merged["case_id"])
    samples = [
        pd.read_csv(s.path / "samples.csv") for s in shards if (s.path / "samples.csv").exists()
    ]
    if samples:
        joined = pd.concat(samples).drop_duplicates(["case_id", "sample"])
        write_atomic(out / "samples.csv", joined[joined["case_id"].isin(kept)].to_csv(index=False))
    ceilings = [
        pd.read_csv(s.path / "ceilings.csv").assign(**({"machine": machine_label(s.env)} if mixed else {}))
        for s in shards
        if (s.path / "ceilings.csv").exists()
    ]  # fmt: skip
    if ceilings:
        keys = ["device", "dtype", *(["machine"] if mixed else [])]
        write_atomic(
            out / "ceilings.csv", pd.concat(ceilings).drop_duplicates(keys).to_csv(index=False)
        )
    merged["run_id"] = run_id = new_run_id()
    write_atomic(out / "results.csv", merged.to_csv(index=False))
    write_atomic(out / "spec.yaml", yaml.safe_dump(shards[0].spec, sort_keys=False))
    for shard in shards:
        keep = out / "shards" / shard.name
        if keep.resolve() != shard.path.resolve():
            keep.mkdir(parents=True, exist_ok=True)
            for name in ("env.json", "run.json"):
                shutil.copyfile(shard.path / name, keep / name)
    env = dict(shards[0].env)
    env["shards"] = {s.name: machine_label(s.env) for s in shards}
    write_atomic(out / "env.json", json.dumps(env, indent=2, default=str) + "\n")
    merged_from = [
        {"shard": s.name, "path": str(s.path), "status": s.info.get("status"),
         "cases": len(s.results)}
        for s in shards
    ]  # fmt: skip
    info = {
        "run_id": run_id,
        "schema_version": SCHEMA_VERSION,
        "status": "incomplete" if missing else "complete",
        "merged_from": merged_from,
        "missing_shards": missing,
        "mixed_machines": mixed,
        "cases_recorded": len(merged),
        "warnings": quality_warnings(merged),
    }
    write_atomic(out / "run.json", json.dumps(info, indent=2) + "\n")
    RunDirectory(out).write_parquet()
