"""``python -m bench history add | backfill | check | publish``: the command line of the history."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

SUITE = "suite geometric mean"


def add_history_parser(commands: argparse._SubParsersAction) -> None:
    history = commands.add_parser(
        "history", help="performance over commits: a store of runs, change points, a site"
    )
    actions = history.add_subparsers(dest="history_command", required=True)
    add = actions.add_parser("add", help="add run directories to a history store")
    add.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    backfill = actions.add_parser(
        "backfill",
        help="sweep each commit of a range in a git worktree and add it",
        description="Unknown options are passed to `bench run` at every commit.",
    )
    backfill.add_argument("--commits", required=True, metavar="A..B")
    backfill.add_argument(
        "--runs-dir", type=Path, default=None, help="where the runs go (default: STORE/../runs)"
    )
    for action in (add, backfill):
        action.add_argument(
            "--repo",
            type=Path,
            metavar="DIR",
            help="the git repository of the code under test (default: the one the run "
            "recorded for add, the one holding the current folder for backfill)",
        )
    check = actions.add_parser(
        "check",
        help="exit 1 when the newest commit starts a regression past the threshold (0 with "
        "too little history to tell, 2 on an error)",
    )
    check.add_argument("--threshold", default="10%", help="slowdown that counts (default 10%%)")
    check.add_argument("--alpha", type=float, default=0.05)
    publish = actions.add_parser("publish", help="write the static dashboard")
    publish.add_argument("--out", type=Path, required=True, metavar="SITE")
    publish.add_argument(
        "--screenshot",
        type=Path,
        metavar="PNG",
        help="also save the page as headless Chromium draws it",
    )
    for action in (add, backfill, check, publish):
        action.add_argument("--store", type=Path, required=True, metavar="DIR")


def command_history(args: argparse.Namespace, extra: list[str]) -> int:
    from .store import HistoryError, HistoryStore  # here: building the parser stays light

    if extra and args.history_command != "backfill":
        print(f"error: unrecognized arguments: {' '.join(extra)}", file=sys.stderr)
        return 2
    store = HistoryStore(args.store)
    started = time.perf_counter()
    try:
        if args.history_command == "add":
            result = store.add(args.run_dirs, args.repo)
            print(f"added {len(result.added)} run(s), {len(result.already)} already in "
                  f"{args.store} ({time.perf_counter() - started:.1f} s)")  # fmt: skip
            return 0
        if args.history_command == "backfill":
            from .backfill import backfill

            runs_dir = args.runs_dir or args.store.resolve().parent / "runs"
            added, failed = backfill(store, args.commits, extra, runs_dir, args.repo)
            print(f"backfill: {len(added)} commit(s) added, {len(failed)} failed")
            return 1 if failed else 0
        if args.history_command == "check":
            return _check(store, args)
        from .site import publish, screenshot

        index = publish(store.rounds(), args.out)
        size = sum(p.stat().st_size for p in args.out.iterdir()) / 1e6
        print(f"site: {index} ({size:.1f} MB, {time.perf_counter() - started:.1f} s); open it "
              f"in a browser: {index.resolve().as_uri()}")  # fmt: skip
        if args.screenshot:
            try:
                print(f"screenshot: {screenshot(index, args.screenshot)}")
            except RuntimeError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
        return 0
    except HistoryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _check(store, args: argparse.Namespace) -> int:
    """Each series of the newest commit (the suite's geometric mean, every case) on each
    machine; exit 1 if any regressed."""
    import numpy as np
    import pandas as pd

    from ..gate.compare import CompareInputError, parse_threshold
    from ..gate.render import append_step_summary
    from .changes import MIN_COMMITS, change_points, decide, newest_check
    from .series import case_points, suite_points
    from .store import HistoryError

    try:
        threshold = parse_threshold(args.threshold)
    except CompareInputError as error:
        raise HistoryError(str(error)) from error
    points = case_points(store.rounds())
    rows, checks = [], []
    for machine, on_machine in points.groupby("machine", sort=False):
        newest = on_machine["position"].max()
        suite = suite_points(on_machine)
        series = [(SUITE, suite.assign(value=np.log(suite["ratio"])))]
        series += list(on_machine.groupby("label", sort=False))
        for label, line in series:
            if line["position"].max() != newest:
                continue  # the case is not in the newest commit's run
            commits = line["commit"].tolist()
            values = line["value"].to_numpy(float)
            found = change_points(values, commits)
            checked = newest_check(values, commits, found)
            if checked is None:
                continue
            checks.append(checked)
            rows.append((machine, label, checked))
    decide(checks, threshold=threshold, alpha=args.alpha)
    if not rows:  # a new history: not an error, and nothing to flag yet
        stored = points.groupby("machine")["commit"].nunique().max() if len(points) else 0
        message = (
            f"too little history to check: {stored or 0} commit(s) stored on a machine, "
            f"{MIN_COMMITS} needed; nothing flagged"
        )
        print(message)
        append_step_summary(f"## Performance history\n\n{message}.\n")
        return 0
    table = pd.DataFrame([{
        "machine": machine, "series": label, "since": c.since[:10], "against": c.baseline,
        "ratio": f"{c.ratio:.3f}", "p adjusted": f"{c.p_adjusted:.2g}",
        "verdict": "REGRESSION" if c.regression else "ok",
    } for machine, label, c in rows])  # fmt: skip
    flagged = table[table["verdict"] == "REGRESSION"]
    suite = table[table["series"] == SUITE]
    lines = [suite.to_markdown(index=False), ""]
    if flagged.empty:
        lines.append(f"no regression: {len(table)} series checked at the newest commit "
                     f"(threshold {threshold:.0%}, alpha {args.alpha:g})")  # fmt: skip
    else:
        lines += [
            flagged.to_markdown(index=False),
            "",
            f"{len(flagged)} of {len(table)} series regressed past {threshold:.0%}",
        ]
    text = "\n".join(lines)
    print(text)
    append_step_summary(f"## Performance history\n\n{text}\n")
    return 1 if len(flagged) else 0
