"""Resuming a run directory: what the last process left in flight, what still has to run, and
whether this machine and code can continue what another started."""

from __future__ import annotations

from typing import Any

from ..measurement.environment import capture
from .cases import Case
from .results import RunDirectory

# statuses that `--retry-failed` runs again; `crashed` is a case whose process died in it
FAILED = ("crashed", "error", "oom")


def environment_differences(run_dir: RunDirectory) -> list[str]:
    """What differs between the run's env.json and this process (torch, devices, commit)."""
    recorded, now = run_dir.read_json("env.json"), capture()

    def devices(env: dict[str, Any]) -> list[str]:
        gpus = [d.get("name") for d in env.get("cuda", {}).get("devices", [])]
        return [env.get("cpu_model"), *gpus]

    facts = {
        "torch": lambda env: env.get("torch"),
        "devices": devices,
        "git commit": lambda env: env.get("git_commit"),
    }
    return [
        f"{name}: the run has {read(recorded)!r}, this machine {read(now)!r}"
        for name, read in facts.items()
        if read(recorded) != read(now)
    ]


def record_crash(run_dir: RunDirectory, cases: list[Case], base_row) -> Case | None:
    """If the last process died during a case, record that case as `crashed`; returns it."""
    flight = run_dir.in_progress()
    if flight is None:
        return None
    run_dir.clear_in_progress()
    case = next((c for c in cases if c.case_id == flight["case_id"]), None)
    if case is None or case.case_id in run_dir.recorded_statuses():
        return None  # it was recorded after all (the process died between row and marker)
    row = base_row(case)
    row.update(
        status="crashed",
        error=f"process died during this case (pid {flight['pid']}, started {flight['since']})",
    )
    run_dir.append_row(row)
    return case


def still_to_run(run_dir: RunDirectory, cases: list[Case], retry_failed: bool) -> list[Case]:
    """Cases with no row yet; with `retry_failed`, also those that crashed, erred or ran out
    of memory. Reads only: `drop_failed` clears the old rows before a retry."""
    statuses = run_dir.recorded_statuses()
    return [
        c
        for c in cases
        if c.case_id not in statuses or (retry_failed and statuses[c.case_id] in FAILED)
    ]


def drop_failed(run_dir: RunDirectory) -> None:
    """Remove the rows `--retry-failed` runs again, so each case keeps one row."""
    statuses = run_dir.recorded_statuses()
    run_dir.drop_rows({case_id for case_id, status in statuses.items() if status in FAILED})
