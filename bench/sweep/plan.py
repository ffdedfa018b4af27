"""What one sweep process runs: its spec, its cases (expanded once), its run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..measurement.environment import capture, case_seed
from .cases import Case, expand
from .plugins import plugin_provenance
from .rundir import RunDirectory, new_run_id
from .shards import Shard, select
from .spec import SweepSpec


def cases_of(spec: SweepSpec, shard: Shard | None = None) -> list[Case]:
    """The sweep's cases, or one shard's."""
    return expand(spec) if shard is None else select(expand(spec), shard, spec.timing)


@dataclass
class SweepRun:
    """A run directory opened to be run into, new or resumed, with the cases it is for."""

    spec: SweepSpec
    run_dir: RunDirectory
    run_id: str
    cases: list[Case]
    shard: Shard | None = None

    def seed_of(self, case: Case) -> int:
        """The seed a case's module and input are built from, the same in every round."""
        return case_seed(self.spec.seed, *case.key)


def start_run(
    spec: SweepSpec,
    out: str | Path | None = None,
    *,
    shard: Shard | None = None,
    cases: list[Case] | None = None,
) -> SweepRun:
    """A new run directory (`out`, or results/<run id>) for `cases` (default: the spec's, or
    its shard's)."""
    cases = cases_of(spec, shard) if cases is None else cases  # before the directory exists
    run_id = new_run_id()
    run_dir = RunDirectory(out or Path("results") / run_id)
    env = capture(seed=spec.seed)
    env["code_under_test"] = [plugin_provenance(p) for p in spec.plugins]
    run_dir.create(spec.to_dict(), env, run_id, shard)
    return SweepRun(spec, run_dir, run_id, cases, shard)
