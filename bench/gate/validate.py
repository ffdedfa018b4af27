"""Does `bench compare` hold on this machine, over the gate preset that `bench ab` sweeps?

    python -m bench.gate.validate run DIR [--runs 23]      # the runs (4 to 5 min each)
    python -m bench.gate.validate score DIR [--per-side 2] [--rounds N]  # compares, table
    python -m bench.gate.validate contention DIR            # sweeps beside a busy core
    python -m bench.gate.validate run DIR --runs 11 --instrument simulated --jobs 2
    python -m bench.gate.validate score DIR --per-side 1    # the simulated gate (counts)

`run` sweeps the gate preset `--runs` times, each run a fresh process as `bench ab` runs it,
one after the other, with the slowed copies of `bench.gate.slowed` beside the real variants
(eca, se and cbam in inference, 15% slower).
`score` then compares runs as `bench ab --runs 2` (the gate's default) does: BASE is runs i and
i+2, NEW runs i+1 and i+3 (two sweeps per side, in turns), for every i; twice:

- same code: the gate preset's own cases; every regression flagged is a false alarm
  (goal: a flag in at most 1 of 20 compares);
- slowed: the same runs, with NEW's eca, se and cbam inference cases replaced by their
  slowed copies; the goal is that at least 90% of the slowed cases are flagged, and that the
  cases not slowed are flagged no more often than in the same-code compares.

Rates are per case (how often each gated case is flagged), not per compare. Runs are shared
between compares (23 runs give 20 compares, and neighbouring compares share runs), and nothing
else may run on the machine meanwhile.

With ``--instrument simulated`` the runs sweep the `gate-simulated` preset under valgrind,
with the copies of `bench.gate.slowed_by_work` (extra work, whose added cycles each case
measures beside its original in the same run), and `score` decides on the counts
(`bench.gate.counted`): a compare at `--per-side 1` is what `bench ab --instrument simulated`
does.

`contention` sweeps beside a process spinning on one CPU (`while True: pass`, as a busy
neighbour would): a small sweep of short cases (eca and se, 64 channels, 14x14 and 28x28,
batch 8) four times, then the quick preset once, and gives the share of rows flagged
`contended` (goal: at least 95%). The same share over `run`'s sweeps, on a quiet machine, is
`score`'s "rows flagged contended" (goal: none).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from ..sweep.cases import CASE_FIELDS
from ..sweep.presets import PRESETS
from ..sweep.rundir import RunDirectory
from .compare import TESTED, compare_sides
from .counted import DEFAULT_METRIC
from .known_regression import FRACTION, SLOWED, SUFFIX
from .sides import Run, Side, load_side

ALPHA = 0.05
MEASURED_SLOWDOWN = 0.05  # counts: the slowdown the simulated gate must find (95% of cases)
PER_SIDE = 2  # runs per side: `bench ab`'s default


# per instrument: the preset `bench ab` sweeps, and the plugin that registers slowed copies
SWEPT = {
    "wall": ("gate", "bench.gate.slowed"),
    "simulated": ("gate-simulated", "bench.gate.slowed_by_work"),
}


def sweep_command(out: Path, instrument: str = "wall") -> list[str]:
    """One validation run: the instrument's gate preset, with the slowed copies (which "all"
    takes in by itself; a preset that lists its variants gets them named)."""
    preset, plugin = SWEPT[instrument]
    variants = PRESETS[preset]["variants"]
    named = [] if "all" in variants else [
        "--variants", ",".join([*variants, *(name + SUFFIX for name in SLOWED)])
    ]  # fmt: skip
    return [
        sys.executable, "-m", "bench", "run", "--preset", preset, "--plugin", plugin,
        *named, "--quiet", "--out", str(out),
    ]  # fmt: skip


def run_all(directory: Path, runs: int, instrument: str = "wall", jobs: int = 1) -> None:
    """`runs` sweeps into DIRECTORY/run-01, ...; complete ones are kept (the command resumes).
    `jobs` sweeps at once: counts only (`simulated`), which no neighbour moves."""
    if jobs > 1 and instrument != "simulated":
        raise SystemExit(f"--jobs {jobs}: wall time is timed alone; allowed: 1")
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    todo = []
    for index in range(1, runs + 1):
        out = directory / f"run-{index:02d}"
        if RunDirectory(out).status == "complete":
            continue
        if out.exists():
            shutil.rmtree(out)  # an unfinished run: swept again from the start
        todo.append((index, out))
    running: list[tuple[int, float, subprocess.Popen]] = []
    while todo or running:
        while todo and len(running) < jobs:
            index, out = todo.pop(0)
            process = subprocess.Popen(sweep_command(out, instrument))
            running.append((index, time.perf_counter(), process))
        index, began, process = running.pop(0)
        code = process.wait()
        print(
            f"run {index}/{runs}: exit {code} in {time.perf_counter() - began:.0f} s "
            f"({(time.perf_counter() - started) / 60:.1f} min so far)",
            flush=True,
        )
        if code not in (0, 1):
            raise SystemExit(f"run {index} failed with exit code {code}")


BUSY_SWEEPS = {  # name: (bench run options, tries)
    "eca and se, c64, 14x14 and 28x28, b8": (
        ["--variants", "eca,se", "--channels", "64", "--resolutions", "14,28",
         "--batch-sizes", "8"], 4),
    "quick preset": (["--preset", "quick"], 1),
}  # fmt: skip


def contended_share(run_dir: Path) -> tuple[int, int]:
    """(rows flagged contended, rows measured) of a run directory."""
    results = RunDirectory(run_dir).results()
    measured = results[results["status"] == "ok"]
    return int(sum("contended" in flags for flags in measured["quality_flags"])), len(measured)


def contention(directory: Path) -> str:
    """Sweeps beside a busy CPU; the table of rows flagged contended."""
    rows = []
    for name, (options, tries) in BUSY_SWEEPS.items():
        for attempt in range(1, tries + 1):
            out = directory / f"{name.split(',')[0].replace(' ', '-')}-{attempt}"
            if out.exists():
                shutil.rmtree(out)
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                time.sleep(0.5)  # spinning before the sweep starts
                command = [sys.executable, "-m", "bench", "run", *options, "--quiet",
                           "--out", str(out)]  # fmt: skip
                subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
            finally:
                busy.kill()
                busy.wait()
            flagged, measured = contended_share(out)
            rows.append(
                (name, attempt, f"{flagged} / {measured} ({flagged / max(measured, 1):.0%})")
            )
            print(f"{name}, try {attempt}: {rows[-1][2]} rows flagged contended", flush=True)
    table = pd.DataFrame(rows, columns=["sweep beside a busy CPU", "try", "rows flagged contended"])
    return table.to_markdown(index=False) + "\n"


# ---- scoring ---------------------------------------------------------------------------------


def _slowed_name(label: str) -> str | None:
    """'eca' for 'eca_slowed'; None for any other variant."""
    base = label[: -len(SUFFIX)] if label.endswith(SUFFIX) else None
    return base if base in SLOWED else None


def _view(run: Run, *, slowed: bool) -> tuple[Run, dict[str, float]]:
    """The run as the real gate preset (no slowed copies), or with each slowed copy standing
    in for its original (under the original's case id); and the ids of the cases replaced,
    each with how much more its copy costs in the same run (`_added`; NaN on wall time, where
    the slowdown is set, not measured)."""
    cases = run.cases
    labels = cases["variant_label"].astype(str)
    copies = cases[labels.map(lambda v: _slowed_name(v) is not None)]
    kept = cases[labels.map(lambda v: _slowed_name(v) is None)]
    samples, paired, rounds = dict(run.samples), dict(run.paired_references), dict(run.rounds)
    renamed: dict[str, pd.Series] = {}
    added: dict[str, float] = {}
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
            added[original] = _added(row, kept.loc[original])
            renamed[original] = row.copy()
            renamed[original]["variant_label"] = kept.loc[original, "variant_label"]
            renamed[original]["label"] = kept.loc[original, "label"]
        kept = kept.copy()
        for original, row in renamed.items():
            kept.loc[original] = row
    view = Run(kept, samples, run.source, paired, rounds, run.provenance, run.instrument)
    return view, added


def _added(copy: pd.Series, original: pd.Series) -> float:
    """A slowed copy's count over its original's, in one run, in the metric the counted gate
    decides on by default (NaN on wall time)."""
    before, after = original.get(DEFAULT_METRIC), copy.get(DEFAULT_METRIC)
    if before is None or after is None or pd.isna(before) or pd.isna(after) or not before:
        return float("nan")
    return float(after) / float(before)


def first_rounds(run: Run, rounds: int) -> Run:
    """The run as if its sweep had stopped after `rounds` rounds: each case keeps the samples
    (and paired copies) of its first `rounds` rounds; what a preset with fewer rounds would
    have measured, on the same machine at the same time."""
    samples, paired, numbers = {}, {}, {}
    for key, values in run.samples.items():
        of_sample = run.sample_rounds(key)
        keep = np.isin(of_sample, np.unique(of_sample)[:rounds])
        samples[key], numbers[key] = values[keep], of_sample[keep].tolist()
        if key in run.paired_references:
            paired[key] = np.asarray(run.paired_references[key])[: values.size][keep]
    return Run(run.cases, samples, run.source, paired, numbers, run.provenance, run.instrument)


@dataclass
class Outcome:
    compare: int
    kind: str  # "same code" or "slowed"
    key: str
    label: str
    slowed: bool  # the case's NEW side was slowed
    verdict: str
    ratio: float
    # the between-run spread the compare assumed (a run's mean, one sd); on counts, the
    # references' largest move between processes
    between_sd: float
    compare_verdict: str = ""  # the whole compare's: regression, cannot tell, no regression...
    added: float = float("nan")  # simulated: the slowed copy's cycles over the original's
    check_ratio: float = float("nan")  # the second test's ratio (`Comparison.check`)
    reason: str = ""  # why the compare held the case, where it did


def score(
    directory: Path,
    per_side: int = PER_SIDE,
    threshold: float | None = None,
    alpha: float = ALPHA,
    rounds: int | None = None,
    all_pairs: bool = False,
    metric: str | None = None,
) -> pd.DataFrame:
    """Every compare's verdicts; with `rounds`, on each case's first `rounds` rounds only.
    Compares take consecutive windows of runs; with `all_pairs` (one run per side), every pair
    of runs i < j is a compare, BASE run i and NEW run j."""
    runs = sorted(d for d in directory.glob("run-*") if RunDirectory.holds_run(d))
    window = 2 * per_side  # BASE takes every other run of a window, NEW the ones between
    if len(runs) < window:
        raise SystemExit(f"{directory}: {len(runs)} runs; a compare needs {window}")
    if all_pairs and per_side != 1:
        raise SystemExit("--all-pairs compares one run with another: it needs --per-side 1")
    loaded = [load_side(d).runs[0] for d in runs]
    if rounds is not None:
        loaded = [first_rounds(run, rounds) for run in loaded]
    if all_pairs:
        chosen_runs = [[loaded[i], loaded[j]] for i, j in combinations(range(len(loaded)), 2)]
    else:
        chosen_runs = [loaded[i : i + window] for i in range(len(loaded) - window + 1)]
    compares = len(chosen_runs)
    outcomes = []
    for index, chosen in enumerate(chosen_runs, start=1):
        base_runs, new_runs = chosen[0::2], chosen[1::2]
        base_side = Side([_view(run, slowed=False)[0] for run in base_runs], "BASE")
        for kind, slowed in (("same code", False), ("slowed", True)):
            views = [_view(run, slowed=slowed) for run in new_runs]
            replaced = set.intersection(*(set(added) for _, added in views))
            new_side = Side([view for view, _ in views], "NEW")
            result = compare_sides(
                base_side, new_side, threshold=threshold, alpha=alpha, metric=metric
            )
            spread = (
                result.between_runs.relative_sd
                if result.counted is None
                else result.counted.between_processes
            )
            for case in result.cases:
                added = [view_added.get(case.key, np.nan) for _, view_added in views]
                outcomes.append(Outcome(index, kind, case.key, case.label, case.key in replaced,
                                        case.verdict, case.ratio, spread,
                                        result.verdict, float(np.mean(added)),
                                        case.check_ratio, case.reason))  # fmt: skip
        print(f"compare {index}/{compares} scored", flush=True)
    return pd.DataFrame([o.__dict__ for o in outcomes])


def _slowed_rows(slowed: pd.DataFrame, rate) -> list[tuple[str, str]]:
    """The slowed cases' detection: at the set fraction (wall time), or by the increase each
    case's extra work measured in its own run (counts)."""
    added = slowed["added"] if "added" in slowed else pd.Series(dtype=float)
    if not added.notna().any():
        return [(f"slowed {FRACTION:.0%}: slowed cases flagged regression", rate(slowed))]
    low, median, high = np.percentile(added.dropna(), [0, 50, 100]) - 1
    at_least = slowed[added >= 1 + MEASURED_SLOWDOWN]
    return [
        (f"slowed by extra work (each case +{low:.1%} to +{high:.1%}, median +{median:.1%}): "
         "slowed cases flagged regression", rate(slowed)),
        (f"slowed by at least {MEASURED_SLOWDOWN:.0%}: flagged regression", rate(at_least)),
    ]  # fmt: skip


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

    def compares_with(frame: pd.DataFrame, verdicts: tuple[str, ...] = ("regression",)) -> int:
        return int(frame[frame["verdict"].isin(verdicts)]["compare"].nunique())

    gated = same[same["verdict"].isin(TESTED)]
    flagged = compares_with(same, ("regression", "improvement"))
    rows = [
        ("same code: compares with any regression flagged", f"{compares_with(same)} / {compares}"),
        ("same code: compares with any case flagged (regression or improvement)",
         f"{flagged} / {compares}"),
        ("same code: tested cases flagged regression", rate(gated)),
        ("same code: tested cases flagged improvement", rate(gated, "improvement")),
        ("same code: tested cases shown unchanged", rate(gated, "unchanged")),
        ("same code: tested cases undetermined", rate(gated, "undetermined")),
        ("same code: cases inconclusive", rate(same, "inconclusive")),
        ("same code: cases insufficient (too few rounds)", rate(same, "insufficient")),
        *_slowed_rows(slowed, rate),
        ("slowed: cases not slowed flagged regression",
         rate(others[others["verdict"].isin(TESTED)])),
        ("slowed: compares with a case not slowed flagged", f"{compares_with(others)} / {compares}"),
        ("between-run spread assumed (median over compares)",
         f"{same.groupby('compare')['between_sd'].first().median():.1%}"),
    ]  # fmt: skip
    if "compare_verdict" in outcomes:  # the compare's own verdict (scored since it was kept)

        def verdicts(frame: pd.DataFrame) -> str:
            counts = frame.groupby("compare")["compare_verdict"].first().value_counts()
            return ", ".join(f"{n} {verdict}" for verdict, n in counts.items())

        rows += [("same code: the compares' verdicts", verdicts(same)),
                 ("slowed: the compares' verdicts", verdicts(slowed_run))]  # fmt: skip
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
    run = commands.add_parser("run", help="sweep the gate preset --runs times into DIR")
    run.add_argument("directory", type=Path)
    run.add_argument("--runs", type=int, default=23)
    run.add_argument("--instrument", choices=tuple(SWEPT), default="wall")
    run.add_argument("--jobs", type=int, default=1,
                     help="sweeps at once (simulated only: no neighbour moves a count)")  # fmt: skip
    scored = commands.add_parser("score", help="compare each run with the next; print the table")
    scored.add_argument("directory", type=Path)
    scored.add_argument("--per-side", type=int, default=PER_SIDE, help="runs per side")
    scored.add_argument("--threshold", type=float, default=None,
                        help="default: the instrument's (10% on wall time, 2% on counts)")  # fmt: skip
    scored.add_argument("--alpha", type=float, default=ALPHA)
    scored.add_argument("--metric", default=None,
                        help="simulated runs: the count to decide on (default: the gate's)")  # fmt: skip
    scored.add_argument(
        "--all-pairs",
        action="store_true",
        help="with --per-side 1: every pair of runs is a compare",
    )
    scored.add_argument("--rounds", type=int, default=None,
                        help="score each case's first N rounds of each run only")  # fmt: skip
    busy = commands.add_parser("contention", help="sweeps beside a busy CPU; rows flagged")
    busy.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    if args.command == "contention":
        args.directory.mkdir(parents=True, exist_ok=True)
        report = contention(args.directory)
        (args.directory / "contention.md").write_text(report)
        print(report)
        return
    if args.command == "run":
        if args.runs < 2:
            parser.error(f"--runs {args.runs}: allowed: 2 or more (a compare needs two runs)")
        run_all(args.directory, args.runs, args.instrument, args.jobs)
        return
    if args.per_side < 1:
        parser.error(f"--per-side {args.per_side}: allowed: 1 or more")
    if args.rounds is not None and args.rounds < 2:
        parser.error(f"--rounds {args.rounds}: allowed: 2 or more (a test needs two per side)")
    outcomes = score(args.directory, args.per_side, args.threshold, args.alpha, args.rounds,
                     all_pairs=args.all_pairs, metric=args.metric)  # fmt: skip
    outcomes.to_csv(args.directory / "outcomes.csv", index=False)
    runs = sorted(d for d in args.directory.glob("run-*") if RunDirectory.holds_run(d))
    flagged, measured = map(sum, zip(*(contended_share(d) for d in runs), strict=True))
    report = summary(outcomes) + (
        f"\nOn the quiet machine, rows flagged contended over the {len(runs)} runs: "
        f"{flagged} / {measured}.\n"
    )
    (args.directory / "validation.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
