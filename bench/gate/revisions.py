"""Revisions of the code under test: the git repository it lives in, the revisions named on
the command line, a worktree per revision, and the sweep command that loads each revision's
plugin from its own worktree.

The suite is one installed version for every revision: only the user's code differs. The
exception is the suite's own checkout, whose code is the code under test: there each worktree
sweeps with its own `bench`, as `python -m bench` run inside it imports it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..measurement.environment import REPOSITORY

WORKING_TREE = "."


class RevisionError(ValueError):
    """A repository or revision that cannot be swept (exit code 2, before any sweep)."""


def git(repository: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repository), *args], capture_output=True, text=True)


def find_repository(repo: str | Path | None) -> Path:
    """The top folder of the git repository holding `repo` (default: the current folder)."""
    start = Path(repo or Path.cwd())
    if not start.is_dir():
        raise RevisionError(f"--repo {start}: no such folder")
    found = git(start, "rev-parse", "--show-toplevel")
    if found.returncode != 0:
        raise RevisionError(
            f"{start.resolve()} is not in a git repository: the code under test is compared "
            "across git revisions (name its repository with --repo DIR)"
        )
    return Path(found.stdout.strip()).resolve()


def is_shallow(repository: Path) -> bool:
    return git(repository, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"


def resolve(repository: Path, revision: str) -> str:
    """The commit `revision` names ('.' stays the working tree); RevisionError if unknown."""
    if revision == WORKING_TREE:
        return WORKING_TREE
    found = git(repository, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    if found.returncode != 0:
        hint = (
            "; this is a shallow clone, which may lack it: fetch the whole history "
            "(`git fetch --unshallow`, or `fetch-depth: 0` in actions/checkout)"
            if is_shallow(repository)
            else ""
        )
        raise RevisionError(f"unknown revision {revision!r} in {repository}{hint}")
    return found.stdout.strip()


def default_branch(repository: Path) -> str:
    """origin/HEAD's branch, else main, else master (local or origin's)."""
    head = git(repository, "symbolic-ref", "--quiet", "refs/remotes/origin/HEAD")
    candidates = [head.stdout.strip()] if head.returncode == 0 else []
    candidates += ["origin/main", "main", "origin/master", "master"]
    for ref in candidates:
        if git(repository, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode == 0:
            return ref.removeprefix("refs/remotes/")
    raise RevisionError(
        f"--base auto: {repository} has no default branch (origin/HEAD, main or master); "
        "name the base revision with --base"
    )


@dataclass(frozen=True)
class Base:
    commit: str
    why: str  # printed beside the verdict


def resolve_base(repository: Path, base: str, new: str) -> Base:
    """`base` as a commit; 'auto' is the merge-base of `new` with the default branch."""
    if base != "auto":
        commit = resolve(repository, base)
        return Base(commit, f"--base {base}")
    branch = default_branch(repository)
    tip = "HEAD" if new == WORKING_TREE else new
    merged = git(repository, "merge-base", tip, branch)
    if merged.returncode != 0:
        shallow = is_shallow(repository)
        raise RevisionError(
            f"--base auto: {tip} and {branch} have no merge-base in {repository}"
            + ("; this is a shallow clone: fetch the whole history (`git fetch --unshallow`, "
               "or `fetch-depth: 0` in actions/checkout)" if shallow else "")
        )  # fmt: skip
    commit = merged.stdout.strip()
    return Base(commit, f"--base auto: the merge-base of {tip} with {branch}")


def plugin_targets(sweep_args: list[str]) -> list[tuple[int, str]]:
    """(index in sweep_args of the plugin's value, the plugin) for every --plugin given."""
    found = []
    for index, arg in enumerate(sweep_args):
        if arg == "--plugin" and index + 1 < len(sweep_args):
            found.append((index + 1, sweep_args[index + 1]))
        elif arg.startswith("--plugin="):
            found.append((index, arg.split("=", 1)[1]))
    return found


def _is_file_plugin(target: str) -> bool:
    return target.endswith(".py") or Path(target).is_file()


@dataclass(frozen=True)
class CodeUnderTest:
    """The repository and the plugins (.py files as paths inside it) the sweeps load."""

    repository: Path
    sweep_args: list[str]
    files: dict[int, Path]  # index in sweep_args -> the plugin file, relative to the repository

    @property
    def is_suite(self) -> bool:
        """The suite's own checkout: its code is the code under test."""
        return self.repository == REPOSITORY

    def check_revision(self, revision: str) -> None:
        """RevisionError where a plugin file is missing at `revision` (a commit or '.')."""
        for relative in self.files.values():
            if revision == WORKING_TREE:
                present = (self.repository / relative).is_file()
            else:
                present = git(self.repository, "cat-file", "-e",
                              f"{revision}:{relative.as_posix()}").returncode == 0  # fmt: skip
            if not present:
                where = "the working tree" if revision == WORKING_TREE else revision[:10]
                raise RevisionError(f"the plugin {relative} is not in {where} of {self.repository}")

    def args_at(self, tree: Path) -> list[str]:
        """The sweep's arguments with each plugin file taken from `tree`."""
        args = list(self.sweep_args)
        for index, relative in self.files.items():
            path = str(tree / relative)
            args[index] = f"--plugin={path}" if args[index].startswith("--plugin=") else path
        return args

    def environment_at(self, tree: Path) -> dict[str, str]:
        """The sweep process's environment: in a user's repository, the working folder is
        not on the import path (a folder of theirs named `bench` cannot stand in for the
        suite), and module plugins import from the revision's worktree (`src/` too)."""
        env = dict(os.environ)
        if self.is_suite:
            return env
        env["PYTHONSAFEPATH"] = "1"
        paths = [str(tree), *([str(tree / "src")] if (tree / "src").is_dir() else [])]
        env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return env

    def start_sweep(self, tree: Path, out: Path, extra: list[str]) -> subprocess.Popen:
        """`bench run` of this revision, in its worktree, into `out`, started."""
        command = [sys.executable, "-m", "bench", "run", *self.args_at(tree), *extra,
                   "--out", str(out.resolve())]  # fmt: skip
        return subprocess.Popen(command, cwd=tree, env=self.environment_at(tree))

    def sweep(self, tree: Path, out: Path, extra: list[str]) -> int:
        """`bench run` of this revision into `out`, to its end; the exit code."""
        return self.start_sweep(tree, out, extra).wait()


def code_under_test(repo: str | Path | None, sweep_args: list[str]) -> CodeUnderTest:
    """The repository (`repo`, or the one holding the current folder) and the plugin files
    named in `sweep_args`, each of which must lie inside it."""
    repository = find_repository(repo)
    files = {}
    for index, target in plugin_targets(sweep_args):
        if not _is_file_plugin(target):
            continue  # a module: imported from each revision's worktree (environment_at)
        path = Path(target)
        if path.is_absolute():
            absolute = path.resolve()
        else:  # relative to the current folder, else to the repository's top
            here = (Path.cwd() / path).resolve()
            absolute = here if here.exists() else (repository / path).resolve()
        try:
            files[index] = absolute.relative_to(repository)
        except ValueError:
            raise RevisionError(
                f"--plugin {target}: {absolute} is not inside {repository}; the plugin must be "
                "part of the repository whose revisions are compared"
            ) from None
    return CodeUnderTest(repository, list(sweep_args), files)


@contextmanager
def worktree(repository: Path, revision: str, into: Path) -> Iterator[Path]:
    """A detached worktree of `revision` at `into` (the repository itself for '.'), removed
    afterwards."""
    if revision == WORKING_TREE:
        yield repository
        return
    added = git(repository, "worktree", "add", "--detach", str(into), revision)
    if added.returncode != 0:
        raise RevisionError(f"git worktree add {revision[:10]}: {added.stderr.strip()}")
    try:
        yield into
    finally:
        git(repository, "worktree", "remove", "--force", str(into))
