"""Same-job A/B: sweep two git revisions of the code under test in turns on one machine, then
compare.

The code under test is the git repository holding the current folder (or `--repo DIR`): a
user's repository with their plugin block, or this suite's own checkout. Each revision is
checked out into a worktree and its plugins are loaded from there (`bench.gate.revisions`).

Baselines saved on another machine (or an hour ago on this one) differ by more than the changes
worth catching; two revisions measured in turns, minutes apart on the same machine, do not.
Each sweep times its cases in rounds spread over the sweep (`bench run --rounds`), and each
revision is swept `runs` times (2), in turns (base, new, new, base, ...), whose rounds all count
as evidence: one process's rounds do not see how much two processes of the same code differ.

With ``--instrument simulated`` each case is counted under valgrind, not timed: one run per
side is enough, and the two sides run at once, one process each, since what one process does
cannot move the other's counts. The simulated gate preset (`gate-simulated`) is then the
default sweep.
"""

from __future__ import annotations

import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import yaml

from ..sweep.presets import PRESETS
from .compare import CompareInputError, compare, parse_threshold
from .render import append_step_summary, markdown
from .revisions import (
    WORKING_TREE,
    RevisionError,
    code_under_test,
    resolve,
    resolve_base,
    worktree,
)


def instrument(sweep_args: list[str]) -> str:
    """The instrument the sweeps will measure with: `--instrument`, else the spec file's, else
    wall time."""
    for flag in ("--instrument", "--spec"):
        for index, arg in enumerate(sweep_args):
            name, _, value = arg.partition("=")
            if name != flag:
                continue
            value = value or (sweep_args[index + 1] if index + 1 < len(sweep_args) else "")
            if flag == "--instrument":
                return value
            spec = yaml.safe_load(Path(value).read_text()) if Path(value).is_file() else None
            timing = (spec or {}).get("timing") or {}
            return timing.get("instrument", "wall")
    return "wall"


def sweep_options(sweep_args: list[str], scratch: Path) -> list[str]:
    """`bench run`'s options for both sides: the gate preset (`gate-simulated` for the
    simulated instrument) unless a preset or a spec file is named (a spec file alone, as with
    `bench run`, starts from no preset). The preset goes as a spec file written from this
    checkout, so a BASE older than the preset sweeps the same cases the same way."""
    if any(arg.split("=")[0] in ("--preset", "--spec") for arg in sweep_args):
        return sweep_args
    preset = "gate-simulated" if instrument(sweep_args) == "simulated" else "gate"
    gate = {key: value for key, value in PRESETS[preset].items() if key != "description"}
    spec_file = scratch / "gate-preset.yaml"
    spec_file.write_text(yaml.safe_dump(gate, sort_keys=False))
    return ["--spec", str(spec_file), *sweep_args]


def run_ab(
    base: str,
    new: str,
    sweep_args: list[str],
    *,
    repo: str | None = None,
    runs: int | None = None,
    out: str | None = None,
    threshold: str | None = None,
    alpha: float = 0.05,
    strict: bool = False,
) -> int:
    """Run `bench run SWEEP_ARGS` for BASE and NEW of the repository `repo` (default: the one
    holding the current folder), alternating, then `bench compare`. Everything that could
    refuse (the repository, the revisions, the plugins at each) is checked before any sweep.
    `runs` defaults to 2 per side on wall time and 1 on the simulated instrument, whose sides
    run at once."""
    simulated = instrument(sweep_args) == "simulated"
    runs = runs if runs is not None else 1 if simulated else 2
    out_dir = Path(out or Path("results") / f"ab-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    if any(flag in sweep_args for flag in ("--out", "--resume")):
        print("error: bench ab chooses the run directories; drop --out/--resume", file=sys.stderr)
        return 2
    if runs < 1:
        print(f"error: --runs {runs}: allowed: 1 or more", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as scratch, ExitStack() as trees:
        try:
            code = code_under_test(repo, sweep_options(sweep_args, Path(scratch)))
            new_commit = resolve(code.repository, new)
            chosen = resolve_base(code.repository, base, new)
            for revision in (chosen.commit, new_commit):
                code.check_revision(revision)
            new_label = "the working tree" if new_commit == WORKING_TREE else new_commit[:10]
            compared = (
                f"Repository `{code.repository}`: BASE is {chosen.commit[:10]} ({chosen.why}), "
                f"NEW is {new_label}"
                + (" (the same commit)" if chosen.commit == new_commit else "")
            )
            print(compared, flush=True)
            paths = {
                side: trees.enter_context(worktree(code.repository, revision, Path(scratch) / side))
                for side, revision in (("base", chosen.commit), ("new", new_commit))
            }
        except RevisionError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        for run_index in range(runs):
            # alternate who goes first, so a steady drift favours neither
            order = ("base", "new") if run_index % 2 == 0 else ("new", "base")
            # counts do not depend on what else runs: both sides at once
            batches = [order] if simulated else [(side,) for side in order]
            for batch in batches:
                started = {}
                for side in batch:
                    target = out_dir / side / f"run-{run_index + 1}"
                    print(f"run {run_index + 1}/{runs}: {side} ({paths[side]})", flush=True)
                    started[side] = code.start_sweep(paths[side], target, ["--quiet"])
                for side, process in started.items():
                    code_exit = process.wait()
                    if code_exit not in (0, 1):  # 1: some cases failed; still comparable
                        print(f"error: the {side} sweep exited with {code_exit}", file=sys.stderr)
                        return 2
    try:
        result = compare(
            out_dir / "base", out_dir / "new", alpha=alpha, strict=strict,
            threshold=None if threshold is None else parse_threshold(threshold),
        )  # fmt: skip
    except CompareInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = markdown(result, preface=[compared + "."])
    (out_dir / "compare.md").write_text(report)
    print(report)
    append_step_summary(report, whole=str((out_dir / "compare.md").resolve()))
    return result.exit_code
