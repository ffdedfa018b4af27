"""The two sides of a compare, read: run directories (through their owner,
`bench.sweep.rundir`), directories of them (as `bench ab` writes), or pytest-benchmark JSON
(`bench.sweep.benchmark_json`). Cases are matched by key: a run directory's `case_id`, a
benchmark's full name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..measurement.quality import MACHINE_FLAGS
from ..sweep.benchmark_json import BenchmarkJsonError, read_benchmark_json
from ..sweep.cases import SETTING_FIELDS, SHAPE_FIELDS
from ..sweep.rundir import RunDirectory, RunDirectoryError, provenance_lines

GROUP_KEYS = (*SHAPE_FIELDS, *SETTING_FIELDS)  # a shape and setting: where references pair


class CompareInputError(ValueError):
    """BASE or NEW cannot be read, or they have nothing in common (exit code 2)."""


@dataclass
class Run:
    """One run's cases (a row each, indexed by case key) and their raw samples (seconds)."""

    cases: pd.DataFrame
    samples: dict[str, np.ndarray]
    source: str
    paired_references: dict[str, np.ndarray] = field(default_factory=dict)  # sample by sample
    rounds: dict[str, list[int]] = field(default_factory=dict)  # the round of each sample
    provenance: list[str] = field(default_factory=list)  # what the run measured, a line each
    instrument: str = "wall"  # or "simulated": counts in the rows, no samples
    _reference_keys: dict[str, dict[tuple, str]] = field(default_factory=dict, repr=False)

    def sample_rounds(self, key: str) -> np.ndarray:
        """The round of each of the case's samples (all round 0 where none were recorded)."""
        values = self.samples.get(key, np.array([]))
        return np.asarray(self.rounds.get(key) or [0] * values.size, dtype=int)[: values.size]

    def reference_key(self, reference: str, group: tuple) -> str | None:
        """The key of `reference`'s case at a shape and setting, worked out once per run."""
        if reference not in self._reference_keys:
            refs = self.cases[self.cases["variant_label"] == reference]
            self._reference_keys[reference] = {
                _group(row): key for key, row in refs.iterrows() if len(self.samples.get(key, []))
            }
        return self._reference_keys[reference].get(group)


@dataclass
class Side:
    runs: list[Run]
    source: str

    @property
    def provenance(self) -> list[str]:
        """What the side's runs measured, each line once."""
        return list(dict.fromkeys(line for run in self.runs for line in run.provenance))

    @property
    def keys(self) -> list[str]:
        keys: dict[str, None] = {}
        for run in self.runs:
            keys.update(dict.fromkeys(run.cases.index))
        return list(keys)

    def case(self, key: str) -> pd.Series:
        for run in self.runs:
            if key in run.cases.index:
                return run.cases.loc[key]
        raise KeyError(key)

    def flags(self, key: str) -> list[str]:
        """The machine's quality flags the case carries in any of the side's runs."""
        flags: dict[str, None] = {}
        for run in self.runs:
            if key in run.cases.index:
                carried = run.cases.loc[key].get("quality_flags") or ()
                flags.update(dict.fromkeys(f for f in carried if f in MACHINE_FLAGS))
        return list(flags)


def _group(row: pd.Series) -> tuple:
    return tuple(str(row.get(k, "")) for k in GROUP_KEYS)


# a simulated run writes no samples
_NO_SAMPLES = pd.DataFrame(columns=["case_id", "seconds_per_call", "round"])


def _run_from_directory(path: Path) -> Run:
    try:
        run_dir = RunDirectory(path)
        results = run_dir.results()
        samples = run_dir.samples() if run_dir.has_samples() else _NO_SAMPLES
        provenance = provenance_lines(run_dir.env()) if run_dir.has_env else []
        spec = run_dir.spec() if run_dir.has_spec else {}
        instrument = (spec.get("timing") or {}).get("instrument", "wall")
    except (RunDirectoryError, pd.errors.ParserError, OSError) as error:
        raise CompareInputError(str(error)) from error
    ok = results[results["status"] == "ok"].copy()
    if ok.empty:
        raise CompareInputError(f"{path}: no case with status ok")
    ok["key"] = ok["case_id"].astype(str)
    grouped = {k: g["seconds_per_call"].to_numpy(float) for k, g in samples.groupby("case_id")}
    rounds = {}
    if "round" in samples:
        rounds = {
            k: g["round"].fillna(0).astype(int).tolist() for k, g in samples.groupby("case_id")
        }  # samples written before rounds were recorded count as one stretch
    paired = {}
    if "reference_seconds_per_call" in samples:
        for k, g in samples.dropna(subset=["reference_seconds_per_call"]).groupby("case_id"):
            if len(g) == len(grouped[k]):
                paired[k] = g["reference_seconds_per_call"].to_numpy(float)
    return Run(
        ok.set_index("key"),
        {k: grouped.get(k, np.array([])) for k in ok["key"]},
        str(path),
        paired,
        rounds,
        provenance,
        instrument,
    )


def _run_from_json(path: Path) -> Run:
    try:
        entries = read_benchmark_json(path)
    except BenchmarkJsonError as error:
        raise CompareInputError(str(error)) from error
    rows = [{"key": e.key, "label": e.label, "quality_flags": e.flags, **e.fields} for e in entries]
    return Run(
        pd.DataFrame(rows).set_index("key"),
        {e.key: np.asarray(e.samples_s, dtype=float) for e in entries},
        str(path),
        {e.key: np.asarray(e.reference_samples_s, dtype=float)
         for e in entries if e.reference_samples_s},
        {e.key: e.rounds for e in entries},
    )  # fmt: skip


def load_side(path: str | Path) -> Side:
    """A run directory, a directory of run directories, or a pytest-benchmark JSON file."""
    path = Path(path)
    if path.is_file():
        return Side([_run_from_json(path)], str(path))
    if not path.is_dir():
        raise CompareInputError(f"{path}: no such file or directory")
    if RunDirectory.holds_run(path):
        return Side([_run_from_directory(path)], str(path))
    runs = [_run_from_directory(d) for d in sorted(path.iterdir()) if RunDirectory.holds_run(d)]
    if not runs:
        raise CompareInputError(f"{path}: neither a run directory nor a directory of them")
    return Side(runs, str(path))
