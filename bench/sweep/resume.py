"""Resuming a run directory: whether this machine and code can go on with it, what the last
process left in flight, and what still has to run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..measurement.environment import capture
from .cases import Case
from .plan import SweepRun, cases_of
from .rundir import RunDirectory, machine_differences, result_row, utc_now
from .spec import spec_from_dict

# statuses that `--retry-failed` runs again; `crashed` is a case whose process died in it
FAILED = ("crashed", "error", "oom")


class ResumeError(ValueError):
    """A run directory that cannot be resumed here (exit code 2)."""


def environment_differences(run_dir: RunDirectory) -> list[str]:
    """What differs between the run's env.json and this process: the machine facts that make
    timings comparable, and the git commit."""
    return [
        f"{name}: the run has {recorded!r}, this machine {now!r}"
        for name, (recorded, now) in machine_differences(
            run_dir.env(), capture(), code=True
        ).items()
    ]


def open_resumed(path: str | Path, *, force: bool = False) -> SweepRun:
    """The run directory, its spec and its cases (its own shard's), after checking that this
    machine and code can go on with it."""
    run_dir = RunDirectory(path)
    if not run_dir.has_spec:
        raise ResumeError(f"--resume {run_dir.path}: no spec.yaml; not a run directory")
    differences = environment_differences(run_dir)
    if differences and not force:
        raise ResumeError(
            f"--resume {run_dir.path}: this is not the machine and code the run started on:\n  "
            + "\n  ".join(differences)
            + "\n(--force resumes anyway; the rows would then mix the two)"
        )
    spec, _ = spec_from_dict(run_dir.spec())
    shard = run_dir.shard
    return SweepRun(spec, run_dir, run_dir.run_id, cases_of(spec, shard), shard)


@dataclass
class ResumePlan:
    """What a resume does before it times anything."""

    crashed: Case | None  # the case the last process died in: recorded, not run again
    todo: list[Case]
    already_recorded: int


def plan_resume(run: SweepRun, *, retry_failed: bool) -> ResumePlan:
    """What `--resume` would do, reading only (`--dry-run` prints it)."""
    flight = run.run_dir.in_progress()
    statuses = run.run_dir.recorded_statuses()
    crashed = None
    if flight is not None and flight["case_id"] not in statuses:
        crashed = next((c for c in run.cases if c.case_id == flight["case_id"]), None)
    todo = [
        c
        for c in run.cases
        if (c.case_id not in statuses or (retry_failed and statuses[c.case_id] in FAILED))
        # the case in flight is recorded as crashed, not run, unless failures are retried
        and (crashed is None or c.case_id != crashed.case_id or retry_failed)
    ]
    return ResumePlan(crashed, todo, len(run.cases) - len(todo))


def prepare_resume(run: SweepRun, *, retry_failed: bool) -> ResumePlan:
    """Carry out what a resume does first: orphan samples dropped, the case the last process
    died in recorded as `crashed`, and with `retry_failed` the failed rows taken back."""
    run_dir = run.run_dir
    run_dir.drop_orphan_samples()  # samples of a case whose row was never written
    plan = plan_resume(run, retry_failed=False)
    flight = run_dir.in_progress()
    run_dir.clear_in_progress()
    if plan.crashed is not None:
        run_dir.append_row(
            result_row(
                plan.crashed, run.run_id, run.seed_of(plan.crashed), status="crashed",
                error=f"process died during this case (pid {flight['pid']}, started "
                f"{flight['since']})",
            )
        )  # fmt: skip
    if retry_failed:
        statuses = run_dir.recorded_statuses()
        run_dir.drop_rows({case_id for case_id, status in statuses.items() if status in FAILED})
    plan.todo = plan_resume(run, retry_failed=retry_failed).todo
    plan.already_recorded = len(run.cases) - len(plan.todo)
    run_dir.update_info(status="running", resumed_utc=utc_now())
    return plan
