"""The history store: every round of every case of every run added, keyed by commit, commit
time, run id and machine, in Parquet files partitioned by machine.

    STORE/history.json                          {"format": 1}
    STORE/machine=<fingerprint>/<run_id>.parquet one file per run, written once

A run is one file, named by its run id, so adding a run twice changes nothing and adding never
rewrites what is there. The fingerprint hashes the run directory's "same machine" facts
(`bench.sweep.rundir.machine_facts`: CPU, GPUs, CUDA, torch, triton, threads), so runs from
other machines are kept apart and never mixed in one series. Rows are one round of one case:
the round's median time and the median of the copy timed beside it, which the series
(`bench.history.series`) normalise with the gate's held slope. (The gate itself takes a
round's copy level sample by sample, `bench.gate.model.round_levels`; the store keeps the
copy's median, the meaning of its format 1.)
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..measurement.environment import REPOSITORY
from ..sweep.cases import SETTING_FIELDS, SHAPE_FIELDS
from ..sweep.rundir import (
    RunDirectory,
    RunDirectoryError,
    machine_facts,
    machine_label,
    tested_revision,
)

FORMAT = 1  # raise when a stored column changes meaning; newer stores are refused
FORMAT_FILE = "history.json"
IDENTITY = ("case_id", "label", "variant_label", "role", *SHAPE_FIELDS, *SETTING_FIELDS)
COLUMNS = (
    "machine", "machine_label", "commit", "commit_time", "dirty", "run_id", "run_dir",
    *IDENTITY, "round", "time_s", "reference_s", "samples", "quality",
)  # fmt: skip


def with_launch(rounds: pd.DataFrame) -> pd.DataFrame:
    """Rounds stored before the launch axis existed were all launched eagerly."""
    if "launch" not in rounds:
        return rounds.assign(launch="eager")
    return rounds.assign(launch=rounds["launch"].fillna("eager"))


class HistoryError(ValueError):
    """A run cannot be added, or the store cannot be read (exit code 2); nothing was written."""


def machine_fingerprint(env: dict) -> str:
    """A short, stable name for the "same machine" facts."""
    facts = json.dumps(machine_facts(env), sort_keys=True, default=str)
    return hashlib.sha256(facts.encode()).hexdigest()[:12]


def commit_time(commit: str, repository: Path = REPOSITORY) -> str | None:
    """The commit's committer time (ISO 8601), or None where this repository lacks it."""
    result = subprocess.run(
        ["git", "-C", str(repository), "show", "-s", "--format=%cI", commit],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


@dataclass
class RunRounds:
    """One run directory read for the store: its key and its rows."""

    run_id: str
    machine: str
    commit: str
    rows: pd.DataFrame


def read_run(path: str | Path, repository: Path | None = None) -> RunRounds:
    """A run directory's rounds as store rows, keyed by the commit of the code under test
    (`bench.sweep.rundir.tested_revision`), its time read from `repository` (default: the
    repository the run recorded); HistoryError if it cannot go in a history."""
    run_dir = RunDirectory(path)
    if not run_dir.holds_run(path) or not run_dir.started:
        raise HistoryError(f"{path}: not a run directory (no results.csv and run.json)")
    try:
        info, env = run_dir.info(), run_dir.env()
        results, samples = run_dir.results(), run_dir.samples()
    except (RunDirectoryError, OSError, ValueError) as error:
        raise HistoryError(f"{path}: {error}") from error
    tested = tested_revision(env)  # the code under test: the user's plugin, or the suite
    commit = tested.commit
    if not commit or commit == "unknown":
        raise HistoryError(
            f"{path}: env.json names no git commit of the code under test ({tested.what}), "
            "so the run has no place in a history (keep the plugin in a git repository)"
        )
    where = Path(repository or tested.repository or REPOSITORY)
    when = commit_time(commit, where) or info.get("started_utc")
    machine = machine_fingerprint(env)
    ok = results[results["status"] == "ok"]  # the variants, and the references beside them
    if ok.empty or samples.empty:
        raise HistoryError(f"{path}: no case with status ok and samples")
    samples = samples.copy()
    if "round" not in samples:
        samples["round"] = 0
    samples["round"] = samples["round"].fillna(0).astype(int)
    if "reference_seconds_per_call" not in samples:
        samples["reference_seconds_per_call"] = float("nan")
    rounds = (
        samples[samples["case_id"].isin(ok["case_id"])]
        .groupby(["case_id", "round"])
        .agg(
            time_s=("seconds_per_call", "median"),
            reference_s=("reference_seconds_per_call", "median"),
            samples=("seconds_per_call", "size"),
        )
        .reset_index()
    )
    identity = ok[[c for c in (*IDENTITY, "quality") if c in ok]].drop_duplicates("case_id")
    rows = rounds.merge(identity, on="case_id", how="inner")
    rows = rows.assign(
        machine=machine, machine_label=machine_label(env), commit=commit, commit_time=when,
        dirty=bool(tested.dirty), run_id=run_dir.run_id,
        run_dir=str(Path(path).resolve()),
    )  # fmt: skip
    for column in COLUMNS:
        if column not in rows:
            rows[column] = None
    rows["quality"] = rows["quality"].fillna("ok").astype(str)
    return RunRounds(info["run_id"], machine, commit, rows[list(COLUMNS)])


@dataclass
class AddResult:
    added: list[str]  # run ids
    already: list[str]


class HistoryStore:
    """A directory of Parquet files, one per run, partitioned by machine."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _check_format(self) -> None:
        marker = self.path / FORMAT_FILE
        if not marker.exists():
            if self.path.exists() and any(self.path.iterdir()):
                raise HistoryError(
                    f"{self.path}: not a history store (no {FORMAT_FILE}) and not empty"
                )
            return
        try:
            found = int(json.loads(marker.read_text())["format"])
        except (ValueError, KeyError, TypeError) as error:
            raise HistoryError(f"{marker}: unreadable ({error})") from error
        if found > FORMAT:
            raise HistoryError(
                f"{self.path}: a store of format {found}, written by a newer bench; this one "
                f"reads formats up to {FORMAT}"
            )

    def run_file(self, machine: str, run_id: str) -> Path:
        return self.path / f"machine={machine}" / f"{run_id}.parquet"

    def add(self, run_dirs: list[str | Path], repository: Path | None = None) -> AddResult:
        """Add runs; every run is read and checked before anything is written."""
        self._check_format()
        runs = [read_run(path, repository) for path in run_dirs]
        self.path.mkdir(parents=True, exist_ok=True)
        marker = self.path / FORMAT_FILE
        if not marker.exists():
            marker.write_text(json.dumps({"format": FORMAT}) + "\n")
        result = AddResult([], [])
        for run in runs:
            target = self.run_file(run.machine, run.run_id)
            if target.exists():
                result.already.append(run.run_id)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".parquet.partial")
            run.rows.to_parquet(partial, index=False)
            partial.replace(target)  # a kill leaves no half-written run in the store
            result.added.append(run.run_id)
        return result

    def rounds(self) -> pd.DataFrame:
        """Every stored round, every machine; an empty store is an error."""
        self._check_format()
        files = sorted(self.path.glob("machine=*/*.parquet"))
        if not files:
            raise HistoryError(f"{self.path}: no run in this history store yet (bench history add)")
        rounds = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        return with_launch(rounds)

    def commits(self, machine: str) -> set[str]:
        """The commits stored for a machine."""
        files = sorted(self.path.glob(f"machine={machine}/*.parquet"))
        return {c for f in files for c in pd.read_parquet(f, columns=["commit"])["commit"]}
