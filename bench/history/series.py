"""Series over commits from the store's rounds: per machine and case, one point per commit, and
the suite's geometric mean.

A point is the case's time at the series' mean machine speed: per round, log time less `slope`
x (log copy - its mean over the series), the copy being the one timed beside each sample. The
slope is fitted as the gate fits it (`bench.gate.model.held_slope`), here within runs over the
whole series, so the copy takes out the machine's drift as far as it tracks the case. A
commit's value is the mean over its runs' rounds, with a standard error from its runs (two or
more) or its rounds (one run).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..gate.model import held_slope
from ..statistics import geometric_mean_interval
from ..sweep.cases import SETTING_FIELDS, SHAPE_FIELDS
from .store import with_launch

POINT_COLUMNS = (
    "machine", "machine_label", "case_id", "label", "variant_label", *SHAPE_FIELDS,
    *SETTING_FIELDS, "commit", "commit_time", "position", "value", "se", "runs", "rounds",
    "run_dir", "quality",
)  # fmt: skip


def _slope(log_time: np.ndarray, log_reference: np.ndarray, runs: np.ndarray) -> float:
    """How far the copy moves with the case, within runs, held in [0, 1]; 0 without copies."""
    if np.isnan(log_reference).any():
        return 0.0
    frame = pd.DataFrame({"t": log_time, "r": log_reference, "run": runs})
    centred = frame[["t", "r"]] - frame.groupby("run")[["t", "r"]].transform("mean")
    return held_slope(centred["t"].to_numpy(), centred["r"].to_numpy(), flat=0.0)


def commit_order(rounds: pd.DataFrame) -> list[str]:
    """Every stored commit, oldest first (by commit time, then first run)."""
    firsts = rounds.groupby("commit").agg(time=("commit_time", "min"), run=("run_id", "min"))
    return firsts.sort_values(["time", "run"]).index.tolist()


def case_points(rounds: pd.DataFrame) -> pd.DataFrame:
    """One row per machine, case and commit (see the module docstring), in commit order;
    `value` and `se` are on the log scale, `position` the commit's place in `commit_order`."""
    rounds = with_launch(rounds)
    order = {commit: i for i, commit in enumerate(commit_order(rounds))}
    variants = rounds[(rounds["role"] != "reference") & (rounds["time_s"] > 0)]
    points = []
    for (_machine, _case), group in variants.groupby(["machine", "case_id"], sort=False):
        log_time = np.log(group["time_s"].to_numpy(float))
        log_ref = np.log(group["reference_s"].to_numpy(float))
        slope = _slope(log_time, log_ref, group["run_id"].to_numpy())
        z = log_time if slope == 0 else log_time - slope * (log_ref - np.nanmean(log_ref))
        runs = group.assign(z=z).groupby("run_id").agg(
            commit=("commit", "first"), z=("z", "mean"), sd=("z", "std"), n=("z", "size"),
            run_dir=("run_dir", "first"), quality=("quality", "first"),
        )  # fmt: skip
        first = group.iloc[0]
        for commit, by_commit in runs.groupby("commit"):
            if len(by_commit) > 1:
                se = float(by_commit["z"].std(ddof=1) / np.sqrt(len(by_commit)))
            else:
                row = by_commit.iloc[0]
                se = float(row["sd"] / np.sqrt(row["n"])) if row["n"] > 1 else float("nan")
            points.append({
                **{c: first[c] for c in ("machine", "machine_label", "case_id", "label",
                                         "variant_label", *SHAPE_FIELDS, *SETTING_FIELDS)},
                "commit": commit,
                "commit_time": group.loc[group["commit"] == commit, "commit_time"].iloc[0],
                "position": order[commit],
                "value": float(by_commit["z"].mean()),
                "se": se,
                "runs": len(by_commit),
                "rounds": int(by_commit["n"].sum()),
                "run_dir": by_commit["run_dir"].iloc[-1],
                "quality": ";".join(sorted({q for q in by_commit["quality"] if q != "ok"}))
                or "ok",
            })  # fmt: skip
    frame = pd.DataFrame(points, columns=list(POINT_COLUMNS))
    return frame.sort_values(["machine", "case_id", "position"], ignore_index=True)


def suite_points(points: pd.DataFrame) -> pd.DataFrame:
    """Per machine and commit: the geometric mean over the cases there of each case's time
    relative to its own median over the history (so cases that come and go do not move it),
    with its 95% interval over cases."""
    relative = points.assign(
        offset=points["value"] - points.groupby(["machine", "case_id"])["value"].transform("median")
    )
    rows = []
    for (machine, commit), group in relative.groupby(["machine", "commit"], sort=False):
        mean, low, high = geometric_mean_interval(np.exp(group["offset"].to_numpy(float)))
        rows.append({"machine": machine, "machine_label": group["machine_label"].iloc[0],
                     "commit": commit, "commit_time": group["commit_time"].iloc[0],
                     "position": int(group["position"].iloc[0]), "ratio": mean,
                     "ci_low": low, "ci_high": high, "cases": len(group),
                     "run_dir": group["run_dir"].iloc[0]})  # fmt: skip
    frame = pd.DataFrame(rows)
    return frame.sort_values(["machine", "position"], ignore_index=True) if rows else frame
