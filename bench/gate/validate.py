"""Does `bench compare` hold on this machine, over the whole quick preset?

    python -m bench.gate.validate run DIR [--runs 23]      # the runs (about 2 min each)
    python -m bench.gate.validate score DIR [--per-side 2]  # the compares and the table

`run` sweeps the quick preset `--runs` times, each run a fresh process with the gate's own
budget (the preset's, as CI runs it), one after the other, with the slowed copies of
`bench.gate.slowed` beside the real variants (eca, se and cbam in inference, 15% slower).
`score` then compares runs as `bench ab --runs 2` (the gate's default) does: BASE is runs i and
i+2, NEW runs i+1 and i+3 (two sweeps per side, in turns), for every i; twice:

- same code: the quick preset's own cases; every regression flagged is a false alarm
  (goal: a flag in at most 1 of 20 compares);
- slowed: the same runs, with NEW's eca, se and cbam inference cases replaced by their
  slowed copies; the goal is that at least 90% of the slowed cases are flagged, and that the
  cases not slowed are flagged no more often than in the same-code compares.

Rates are per case (how often each gated case is flagged), not per compare. Runs are shared
between compares (23 runs give 20 compares, and neighbouring compares share runs), and nothing
else may run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..sweep.cases import CASE_FIELDS
from ..sweep.rundir import RunDirectory
from .compare import compare_sides
from .known_regression import FRACTION, SLOWED, SUFFIX
from .sides import Run, Side, load_side

THRESHOLD = 0.10
ALPHA = 0.05
PER_SIDE = 2  # runs per side: `bench ab`'s default


def sweep_command(out: Path) -> list[str]:
    """One validation run: the quick preset as the gate runs it, with the slowed copies."""
    return [
        sys.executable, "-m", "bench", "run", "--preset", "quick", "--plugin",
        "bench.gate.slowed", "--quiet", "--out", str(out),
    ]  # fmt: skip


def run_all(directory: Path, runs: int) -> None:
    """`runs` sweeps into DIRECTORY/run-01, ...; complete ones are kept (the command resumes)."""
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for index in range(1, runs + 1):
        out = directory / f"run-{index:02d}"
        if RunDirectory(out).status == "complete":
            continue
        if out.exists():
            shutil.rmtree(out)  # an unfinished run: swept again from the start
        began = time.perf_counter()
        code = subprocess.run(sweep_command(out)).returncode
        print(
            f"run {index}/{runs}: exit {code} in {time.perf_counter() - began:.0f} s "
            f"({(time.perf_counter() - started) / 60:.1f} min so far)",
            flush=True,
        )
        if code not in (0, 1):
            raise SystemExit(f"run {index} failed with exit code {code}")


# ---- scoring ---------------------------------------------------------------------------------


def _slowed_name(label: str) -> str | None:
    """'eca' for 'eca_slowed'; None for any other variant."""
    base = label[: -len(SUFFIX)] if label.endswith(SUFFIX) else None
    return base if base in SLOWED else None


def _view(run: Run, *, slowed: bool) -> tuple[Run, set[str]]:
    """The run as the real quick preset (no slowed copies), or with each slowed copy standing
    in for its original (under the original's case id); and the ids of the cases replaced."""
    cases = run.cases
    labels = cases["variant_label"].astype(str)
    copies = cases[labels.map(lambda v: _slowed_name(v) is not None)]
    kept = cases[labels.map(lambda v: _slowed_name(v) is None)]
    samples, paired, rounds = dict(run.samples), dict(run.paired_references), dict(run.rounds)
    renamed: dict[str, pd.Series] = {}
    if slowed:
        fields = [f for f in CASE_FIELDS if f != "variant_label"]
        originals = {
            (row["variant_label"], *(str(row[f]) for f in fields)): key
            for key, row in kept.iterrows()
        }
        for key, row in copies.iterrows():
            original = originals.get(
                (_slowed_name(row["variant_label"]), *(str(row[f]) for f in fields))
            )
            if original is None:
                continue
            for table in (samples, paired, rounds):
                if key in table:
                    table[original] = table[key]
            renamed[original] = row.copy()
            renamed[original]["variant_label"] = kept.loc[original, "variant_label"]
            renamed[original]["label"] = kept.loc[original, "label"]
        kept = kept.copy()
        for original, row in renamed.items():
            kept.loc[original] = row
    return Run(kept, samples, run.source, paired, rounds), set(renamed)


@dataclass
class Outcome:
    compare: int
    kind: str  # "same code" or "slowed"
    key: str
    label: str
    slowed: bool  # the case's NEW side was slowed
    verdict: str
    ratio: float


def score(
    directory: Path, per_side: int = PER_SIDE, threshold: float = THRESHOLD, alpha: float = ALPHA
) -> pd.DataFrame:
    runs = sorted(d for d in directory.glob("run-*") if RunDirectory.holds_run(d))
    window = 2 * per_side  # BASE takes every other run of a window, NEW the ones between
    if len(runs) < window:
        raise SystemExit(f"{directory}: {len(runs)} runs; a compare needs {window}")
    loaded = [load_side(d).runs[0] for d in runs]
    compares = len(loaded) - window + 1
    outcomes = []
    for index in range(1, compares + 1):
        chosen = loaded[index - 1 : index - 1 + window]
        base_runs, new_runs = chosen[0::2], chosen[1::2]
        base_side = Side([_view(run, slowed=False)[0] for run in base_runs], "BASE")
        for kind, slowed in (("same code", False), ("slowed", True)):
            views = [_view(run, slowed=slowed) for run in new_runs]
            replaced = set.intersection(*(keys for _, keys in views))
            new_side = Side([view for view, _ in views], "NEW")
            result = compare_sides(base_side, new_side, threshold=threshold, alpha=alpha)
            for case in result.cases:
                outcomes.append(Outcome(index, kind, case.key, case.label, case.key in replaced,
                                        case.verdict, case.ratio))  # fmt: skip
        print(f"compare {index}/{compares} scored", flush=True)
    return pd.DataFrame([o.__dict__ for o in outcomes])


def summary(outcomes: pd.DataFrame) -> str:
    """The validation table (Markdown) from `score`'s outcomes."""
    compares = outcomes["compare"].nunique()
    same = outcomes[outcomes["kind"] == "same code"]
    slowed_run = outcomes[outcomes["kind"] == "slowed"]
    slowed = slowed_run[slowed_run["slowed"]]
    others = slowed_run[~slowed_run["slowed"]]

    def rate(frame: pd.DataFrame, verdict: str = "regression") -> str:
        flagged = int((frame["verdict"] == verdict).sum())
        return f"{flagged} / {len(frame)} ({flagged / max(len(frame), 1):.1%})"

    def compares_with(frame: pd.DataFrame) -> int:
        return int(frame[frame["verdict"] == "regression"]["compare"].nunique())

    gated = same[same["verdict"].isin(["regression", "improvement", "unchanged"])]
    rows = [
        ("same code: compares with any regression flagged", f"{compares_with(same)} / {compares}"),
        ("same code: gated cases flagged regression", rate(gated)),
        ("same code: gated cases flagged improvement", rate(gated, "improvement")),
        ("same code: cases inconclusive", rate(same, "inconclusive")),
        ("same code: cases insufficient (too few rounds)", rate(same, "insufficient")),
        (f"slowed {FRACTION:.0%}: slowed cases flagged regression", rate(slowed)),
        ("slowed: cases not slowed flagged regression", rate(
            others[others["verdict"].isin(["regression", "improvement", "unchanged"])])),
        ("slowed: compares with a case not slowed flagged", f"{compares_with(others)} / {compares}"),
    ]  # fmt: skip
    table = pd.DataFrame(rows, columns=["what", "measured"])
    worst = (
        slowed.groupby("label")["verdict"]
        .apply(lambda v: (v == "regression").mean())
        .sort_values()
        .head(5)
    )
    lines = [table.to_markdown(index=False), "", "Slowed cases flagged least often:", ""]
    lines += [f"- {label}: {share:.0%}" for label, share in worst.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="sweep the quick preset --runs times into DIR")
    run.add_argument("directory", type=Path)
    run.add_argument("--runs", type=int, default=23)
    scored = commands.add_parser("score", help="compare each run with the next; print the table")
    scored.add_argument("directory", type=Path)
    scored.add_argument("--per-side", type=int, default=PER_SIDE, help="runs per side")
    scored.add_argument("--threshold", type=float, default=THRESHOLD)
    scored.add_argument("--alpha", type=float, default=ALPHA)
    args = parser.parse_args(argv)
    if args.command == "run":
        if args.runs < 2:
            parser.error(f"--runs {args.runs}: allowed: 2 or more (a compare needs two runs)")
        run_all(args.directory, args.runs)
        return
    if args.per_side < 1:
        parser.error(f"--per-side {args.per_side}: allowed: 1 or more")
    outcomes = score(args.directory, args.per_side, args.threshold, args.alpha)
    outcomes.to_csv(args.directory / "outcomes.csv", index=False)
    report = summary(outcomes)
    (args.directory / "validation.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
