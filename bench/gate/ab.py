"""Same-job A/B: sweep two git revisions in turns on one machine, then compare.

Baselines saved on another machine (or an hour ago on this one) differ by more than the changes
worth catching; two revisions measured in turns, minutes apart on the same machine, do not.
Each sweep times its cases in rounds spread over the sweep (`bench run --rounds`), and each
revision is swept `runs` times (2), in turns (base, new, new, base, ...), whose rounds all count
as evidence: one process's rounds do not see how much two processes of the same code differ.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from ..measurement.environment import REPOSITORY
from ..sweep.presets import PRESETS
from .compare import CompareInputError, compare, parse_threshold
from .render import markdown


def sweep_options(sweep_args: list[str], scratch: Path) -> list[str]:
    """`bench run`'s options for both sides: the gate preset unless a preset or a spec file
    is named (a spec file alone, as with `bench run`, starts from no preset). The preset goes
    as a spec file written from this checkout, so a BASE older than the preset sweeps the same
    cases the same way."""
    if any(arg.split("=")[0] in ("--preset", "--spec") for arg in sweep_args):
        return sweep_args
    gate = {key: value for key, value in PRESETS["gate"].items() if key != "description"}
    spec_file = scratch / "gate-preset.yaml"
    spec_file.write_text(yaml.safe_dump(gate, sort_keys=False))
    return ["--spec", str(spec_file), *sweep_args]


def _git(*args: str, cwd: Path = REPOSITORY) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def _checkout(revision: str, into: Path) -> Path:
    """A detached worktree of `revision`, or the current working tree for '.'."""
    if revision == ".":
        return REPOSITORY
    _git("worktree", "add", "--detach", str(into), revision)
    return into


def run_ab(
    base: str,
    new: str,
    sweep_args: list[str],
    *,
    runs: int = 2,
    out: str | None = None,
    threshold: str = "10%",
    alpha: float = 0.05,
    strict: bool = False,
) -> int:
    """Run `bench run SWEEP_ARGS` for BASE and NEW, alternating, then `bench compare`."""
    out_dir = Path(
        out or REPOSITORY / "results" / f"ab-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    )
    if any(flag in sweep_args for flag in ("--out", "--resume")):
        print("error: bench ab chooses the run directories; drop --out/--resume", file=sys.stderr)
        return 2
    if runs < 1:
        print(f"error: --runs {runs}: allowed: 1 or more", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as scratch:
        trees = {}
        options = sweep_options(sweep_args, Path(scratch))
        try:
            for side, revision in (("base", base), ("new", new)):
                trees[side] = _checkout(revision, Path(scratch) / side)
            for run_index in range(runs):
                # alternate who goes first, so a steady drift favours neither
                order = ("base", "new") if run_index % 2 == 0 else ("new", "base")
                for side in order:
                    target = out_dir / side / f"run-{run_index + 1}"
                    print(f"run {run_index + 1}/{runs}: {side} ({trees[side]})", flush=True)
                    command = [
                        sys.executable,
                        "-m",
                        "bench",
                        "run",
                        *options,
                        "--quiet",
                        "--out",
                        str(target),
                    ]
                    code = subprocess.run(command, cwd=trees[side]).returncode
                    if code not in (0, 1):  # 1: some cases failed; still comparable
                        print(f"error: the {side} sweep exited with {code}", file=sys.stderr)
                        return 2
        except subprocess.CalledProcessError as error:
            print(f"error: git: {error.stderr.strip()}", file=sys.stderr)
            return 2
        finally:
            for tree in trees.values():
                if tree != REPOSITORY:
                    subprocess.run(
                        ["git", "worktree", "remove", "--force", str(tree)],
                        cwd=REPOSITORY,
                        capture_output=True,
                    )
    try:
        result = compare(
            out_dir / "base", out_dir / "new", threshold=parse_threshold(threshold), alpha=alpha,
            strict=strict,
        )  # fmt: skip
    except CompareInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = markdown(result)
    (out_dir / "compare.md").write_text(report)
    print(report)
    return result.exit_code
