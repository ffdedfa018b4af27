"""`bench history backfill --commits A..B`: sweep each commit of the code under test in a git
worktree, as `asv run` does, and add each run to the store.

Each commit of the range (oldest first, `git rev-list --reverse A..B`: after A, up to B) of the
repository holding the current folder (or `--repo DIR`) is checked out into a temporary
worktree and swept there (`python -m bench run` with the given options, each `--plugin` file
taken from that worktree; the suite's own checkout sweeps with its own code), into
RUNS/<commit>. Resumable: a commit whose run is already in the
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

from ..gate.revisions import CodeUnderTest, RevisionError, code_under_test, git, worktree
from ..measurement.environment import capture
from ..sweep.rundir import RunDirectory
from .store import HistoryError, HistoryStore, machine_fingerprint


def commit_range(spec: str, repository: Path) -> list[str]:
    """The commits of `A..B`, oldest first; HistoryError if git does not know the range."""
    if ".." not in spec:
        raise HistoryError(f"--commits {spec!r}: allowed: a range A..B (e.g. HEAD~8..HEAD)")
    result = git(repository, "rev-list", "--reverse", spec)
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
    repo: str | Path | None = None,
) -> tuple[list[str], list[str]]:
    """Sweep and add every commit of `spec` in the repository `repo` (default: the one holding
    the current folder) not yet stored; returns (added, failed) commits."""
    try:
        code = code_under_test(repo, sweep_args)
    except RevisionError as error:
        raise HistoryError(str(error)) from error
    commits = commit_range(spec, code.repository)
    missing = []
    for commit in commits:
        try:
            code.check_revision(commit)
        except RevisionError as error:
            missing.append(str(error))
    if missing:
        raise HistoryError(missing[0] + (f" (and {len(missing) - 1} more)" if missing[1:] else ""))
    check_sweep_args(sweep_args)
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
            code_exit = _sweep(code, commit, out)
            if code_exit not in (0, 1) or not RunDirectory.holds_run(out):
                print(f"{prefix}: the sweep exited with {code_exit}; skipped", flush=True)
                failed.append(commit)
                continue
        store.add([out], code.repository)
        added.append(commit)
        print(f"{prefix}: added ({(time.perf_counter() - started) / 60:.1f} min so far)",
              flush=True)  # fmt: skip
    return added, failed


def _sweep(code: CodeUnderTest, commit: str, out: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as scratch:
        try:
            with worktree(code.repository, commit, Path(scratch) / "tree") as tree:
                return code.sweep(tree, out, ["--quiet"])
        except RevisionError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
