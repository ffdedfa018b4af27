"""`bench history backfill --commits A..B`: sweep each commit in a git worktree, as `asv run`
does, and add each run to the store.

Each commit of the range (oldest first, `git rev-list --reverse A..B`: after A, up to B) is
checked out into a temporary worktree and swept there by its own code (`python -m bench run`
with the given options), into RUNS/<commit>. Resumable: a commit whose run is already in the
store for this machine is skipped, a complete run directory left by an earlier backfill is
added without sweeping again, and an unfinished one is swept afresh. A commit whose sweep fails
(its code may predate an option) is reported and the backfill goes on.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..measurement.environment import REPOSITORY, capture
from ..sweep.rundir import RunDirectory
from .store import HistoryError, HistoryStore, machine_fingerprint


def commit_range(spec: str, repository: Path = REPOSITORY) -> list[str]:
    """The commits of `A..B`, oldest first; HistoryError if git does not know the range."""
    if ".." not in spec:
        raise HistoryError(f"--commits {spec!r}: allowed: a range A..B (e.g. HEAD~8..HEAD)")
    result = subprocess.run(
        ["git", "-C", str(repository), "rev-list", "--reverse", spec],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise HistoryError(f"--commits {spec}: git: {result.stderr.strip() or 'unknown range'}")
    commits = result.stdout.split()
    if not commits:
        raise HistoryError(f"--commits {spec}: the range holds no commit")
    return commits


def check_sweep_args(sweep_args: list[str]) -> None:
    """The sweep options, tried once here (`bench run --dry-run`) before any commit is swept."""
    if any(flag in sweep_args for flag in ("--out", "--resume")):
        raise HistoryError("backfill chooses the run directories; drop --out/--resume")
    dry = subprocess.run([sys.executable, "-m", "bench", "run", *sweep_args, "--dry-run"],
                         capture_output=True, text=True)  # fmt: skip
    if dry.returncode != 0:
        raise HistoryError(f"bench run {' '.join(sweep_args)}: {dry.stderr.strip()}")


def backfill(
    store: HistoryStore,
    spec: str,
    sweep_args: list[str],
    runs_dir: Path,
    repository: Path = REPOSITORY,
) -> tuple[list[str], list[str]]:
    """Sweep and add every commit of `spec` not yet stored; returns (added, failed) commits."""
    check_sweep_args(sweep_args)
    commits = commit_range(spec, repository)
    machine = machine_fingerprint(capture())
    stored = store.commits(machine)
    added, failed = [], []
    started = time.perf_counter()
    for index, commit in enumerate(commits, 1):
        prefix = f"[{index}/{len(commits)}] {commit[:10]}"
        if commit in stored:
            print(f"{prefix}: already in the store", flush=True)
            continue
        out = runs_dir / commit
        if RunDirectory(out).status != "complete":
            if out.exists():
                shutil.rmtree(out)  # an unfinished sweep: swept again from the start
            code = _sweep(commit, sweep_args, out, repository)
            if code not in (0, 1) or not RunDirectory.holds_run(out):
                print(f"{prefix}: the sweep exited with {code}; skipped", flush=True)
                failed.append(commit)
                continue
        store.add([out], repository)
        added.append(commit)
        print(f"{prefix}: added ({(time.perf_counter() - started) / 60:.1f} min so far)",
              flush=True)  # fmt: skip
    return added, failed


def _sweep(commit: str, sweep_args: list[str], out: Path, repository: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(["git", "-C", str(repository), "worktree", "add", "--detach", str(tree),
                        commit], check=True, capture_output=True)  # fmt: skip
        try:
            command = [sys.executable, "-m", "bench", "run", *sweep_args, "--quiet",
                       "--out", str(out.resolve())]  # fmt: skip
            return subprocess.run(command, cwd=tree).returncode
        finally:
            subprocess.run(["git", "-C", str(repository), "worktree", "remove", "--force",
                            str(tree)], capture_output=True)  # fmt: skip
