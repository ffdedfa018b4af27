"""Sharded sweeps through submitit: a Slurm job array, subprocesses on this node, or in-process.

`run_sharded` submits the shards of a spec (each an ordinary run directory under
``<run dir>/shards/``), shows them finishing, and merges them into the run directory. Shards
already complete are not submitted again, so re-running the same command finishes only the rest.

CPU shards never time each other: the local executor runs them one at a time, and on Slurm each
CPU shard asks for a whole node (``--exclusive``), so shards that land on one node run one after
another while shards on different nodes run at once (`ExecutorOptions.exclusive` overrides).
A wait ends: at each shard's time limit plus `WAIT_MARGIN_S`, the shards still unfinished are
listed with their scheduler state and what to run next.
"""

from __future__ import annotations

import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .merge import MergeError, merge
from .rundir import RunDirectory
from .shards import Shard
from .spec import ExecutorOptions

WAIT_MARGIN_S = 300.0  # past a shard's time limit: the scheduler's own grace, and a start
POLL_S = 2.0


def executor_parameters(options: ExecutorOptions, *, cpu_only: bool = True) -> dict[str, Any]:
    """`AutoExecutor.update_parameters` keywords (cluster-prefixed ones reach only that cluster)."""
    params: dict[str, Any] = {"timeout_min": options.timeout_min, "name": "bench-shard"}
    exclusive = cpu_only if options.exclusive is None else options.exclusive
    if exclusive:
        params["slurm_exclusive"] = True  # CPU shards sharing a node would time each other
    if options.gpus_per_task:
        params["gpus_per_node"] = options.gpus_per_task
    if options.cpus_per_task:
        params["cpus_per_task"] = options.cpus_per_task
    if options.slurm_partition:
        params["slurm_partition"] = options.slurm_partition
    if options.slurm_array_parallelism:
        params["slurm_array_parallelism"] = options.slurm_array_parallelism
    if options.slurm_additional:
        params["slurm_additional_parameters"] = dict(options.slurm_additional)
    return params


def make_executor(out: Path, options: ExecutorOptions, *, cpu_only: bool = True):
    """The submitit executor for `options`, its logs under ``<out>/submitit``."""
    import submitit

    executor = submitit.AutoExecutor(folder=Path(out) / "submitit", cluster=options.kind)
    executor.update_parameters(**executor_parameters(options, cpu_only=cpu_only))
    return executor


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt  # the sweep stops as on Ctrl-C: what was timed is written


def run_shard(spec: dict[str, Any], directory: str, shard: str) -> int:
    """One shard, in whatever process the executor gives it: a new run, or the rest of one."""
    from .runner import resume_sweep, run_sweep
    from .spec import spec_from_dict

    # scancel (or a time limit) sends SIGTERM: stop cleanly, so a rerun resumes the shard
    # instead of recording its case in flight as crashed
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        if RunDirectory(directory).started:
            summary = resume_sweep(directory, quiet=True)
        else:
            spec_model = spec_from_dict(spec)[0]
            summary = run_sweep(spec_model, directory, shard=Shard.parse(shard), quiet=True)
    finally:
        signal.signal(signal.SIGTERM, previous)  # the debug executor runs shards in-process
    print(summary.line(), flush=True)
    return summary.exit_code


def _cpu_only(spec: dict[str, Any]) -> bool:
    return all(str(d).startswith("cpu") for d in spec.get("devices", ["cpu"]))


def run_sharded(
    spec: dict[str, Any],
    out: str | Path,
    options: ExecutorOptions,
    *,
    wait: bool = True,
) -> int:
    """Submit the unfinished shards of `spec`, wait, merge into `out`; returns an exit code."""
    out = Path(out)
    shards = [Shard(k, options.shards) for k in range(1, options.shards + 1)]
    run_dir = RunDirectory(out)
    directory = {s: run_dir.shard_dir(s).path for s in shards}
    todo = [s for s in shards if RunDirectory(directory[s]).status != "complete"]
    print(
        f"{len(shards)} shards through submitit ({options.kind}); "
        f"{len(shards) - len(todo)} already complete",
        flush=True,
    )
    executor = make_executor(out, options, cpu_only=_cpu_only(spec))
    args = ([spec] * len(todo), [str(directory[s]) for s in todo], [s.label for s in todo])
    jobs: dict[Shard, Any] = {}
    outcomes: dict[Shard, bool] = {}
    one_at_a_time = options.kind == "local" and _cpu_only(spec)
    if one_at_a_time and len(todo) > 1:
        print(
            "note: CPU shards on one machine would time each other: they run one at a time",
            flush=True,
        )
    if one_at_a_time:
        for shard in todo:
            jobs[shard] = executor.submit(run_shard, spec, str(directory[shard]), shard.label)
            outcomes[shard] = _outcome(shard, jobs[shard])
    elif options.kind == "local":
        # each shard its own GPU, as many at once as the node has
        gpus = max(1, torch.cuda.device_count())
        for start in range(0, len(todo), gpus):
            batch = todo[start : start + gpus]
            for gpu, shard in enumerate(batch):
                executor.update_parameters(visible_gpus=[gpu], gpus_per_node=1)
                jobs[shard] = executor.submit(run_shard, spec, str(directory[shard]), shard.label)
            for shard in batch:
                outcomes[shard] = _outcome(shard, jobs[shard])
    elif todo:
        jobs = dict(zip(todo, executor.map_array(run_shard, *args), strict=True))
    merge_command = (
        f"python -m bench merge {' '.join(str(directory[s]) for s in shards)} --out {out}"
    )
    if not wait:
        for shard, job in jobs.items():
            print(f"submitted shard {shard.label}: job {job.job_id}")
        print(f"when they are done: {merge_command}")
        return 0
    waiting = {shard: job for shard, job in jobs.items() if shard not in outcomes}
    # a debug job runs in this process when its result is asked for: nothing to wait for
    unfinished = {} if options.kind == "debug" else _wait(waiting, wait_limit_s(options))
    for shard, job in waiting.items():
        if shard not in unfinished:
            outcomes[shard] = _outcome(shard, job)
    if unfinished:
        _report_unfinished(unfinished, options)
        return 1
    failed = [shard for shard, ok in outcomes.items() if not ok]
    for shard in failed:
        print(f"shard {shard.label} failed; log: {jobs[shard].paths.stderr}", file=sys.stderr)
    if failed:
        print("run the same command again to finish only the failed shards", file=sys.stderr)
    present = [directory[s] for s in shards if RunDirectory.holds_run(directory[s])]
    if not present:
        return 1
    staging = out / ".merging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        summary = merge(present, staging)
    except MergeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _promote(staging, out)
    print(summary.line().replace(str(staging), str(out)))
    return 1 if failed or not summary.complete else 0


def _wait(jobs: dict[Shard, Any], limit_s: float) -> dict[Shard, Any]:
    """Wait until every job is done or `limit_s` has passed; returns the jobs not done."""
    deadline = time.monotonic() + limit_s
    pending = dict(jobs)
    while pending:
        pending = {shard: job for shard, job in pending.items() if not _done(job)}
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    return pending


def wait_limit_s(options: ExecutorOptions) -> float:
    """How long `bench run` waits for its shards: each one's time limit, plus a margin."""
    return options.timeout_min * 60 + WAIT_MARGIN_S


def _done(job) -> bool:
    try:
        return job.done()
    except Exception:  # the scheduler answered with an error: `_outcome` tells how it ended
        return True


def _report_unfinished(unfinished: dict[Shard, Any], options: ExecutorOptions) -> None:
    print(
        f"error: {len(unfinished)} shard(s) not finished {wait_limit_s(options):.0f} s after "
        f"submission (each shard's limit, {options.timeout_min} min, plus a margin):",
        file=sys.stderr,
    )
    for shard, job in unfinished.items():
        print(f"  shard {shard.label}: job {job.job_id}, state {_state(job)}", file=sys.stderr)
    ids = " ".join(str(job.job_id) for job in unfinished.values())
    print(
        f"cancel them (scancel {ids}) if the scheduler lost them, then run the same command "
        "again: it finishes only the shards not complete",
        file=sys.stderr,
    )


def _state(job) -> str:
    try:
        return str(job.state)
    except Exception as error:  # the scheduler cannot say: that is the state
        return f"unknown ({type(error).__name__})"


def _outcome(shard: Shard, job) -> bool:
    """Wait for `job` and say how its shard ended; True if it ran (failed cases are its rows')."""
    try:
        code = job.result()
    except Exception as error:  # the job itself died: named, with its log
        print(f"shard {shard.label}: failed ({type(error).__name__})", file=sys.stderr, flush=True)
        return False
    if code in (0, 1):
        print(f"shard {shard.label}: done (exit {code})", flush=True)
        return True
    why = "interrupted: cancelled, past its limit or Ctrl-C" if code == 130 else "exit"
    print(f"shard {shard.label}: failed ({why}, exit {code})", file=sys.stderr, flush=True)
    return False


def _promote(merged: Path, out: Path) -> None:
    """Move the merged files up into the run directory itself (shards/ stays beside them)."""
    for item in merged.iterdir():
        target = out / item.name
        if item.name == RunDirectory(out).shards_dir.name:
            continue
        if target.is_dir():
            shutil.rmtree(target)
        item.replace(target)
    shutil.rmtree(merged)
