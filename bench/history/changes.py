"""Change points in a series over commits, and whether the newest commit started a regression.

The search is ruptures' PELT (`ruptures.Pelt`, exact optimal partitioning with pruning) on the
log values scaled to unit noise, with an L2 cost and a penalty of PENALTY x log(n) per change:
a step is kept when splitting there lowers the cost by more than that. The noise is the series'
own, estimated robustly from its successive differences (a step moves one difference, not
their median). Each change point comes with the commits on either side, the step's size (the
ratio of the segments' geometric means) and its 95% interval (a t interval from the two
segments at that noise).

`check`: the newest commit starts a regression when the newest segment (from a change point
among the last RECENT commits), or else the newest commit alone against the segment before it,
is slower than 1 + threshold and significantly so (p below `alpha` once adjusted over the
series checked, Benjamini-Hochberg). RECENT lets a drift of a few percent per commit trip the
gate once it has added up, without the newest commit having to carry the whole step.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from scipy.stats import false_discovery_control
from scipy.stats import t as t_dist

PENALTY = 8.0  # x log(n), on unit noise: few false changes in short, heavy-tailed real series
MIN_POINTS = 6  # fewer commits than this hold no change point worth a search
MIN_COMMITS = 3  # the newest commit is checked against at least two before it
MIN_SEGMENT = 2  # commits: a single odd commit is an outlier, not a change
RECENT = 5  # commits: a change point this close to the newest one is "now"
NOISE_PASSES = 3  # the search again with the noise measured around the segments it found


@dataclass
class ChangePoint:
    index: int  # position in the series of the first commit after the change
    before: str  # the last commit before the change
    after: str  # the first commit after it
    ratio: float  # after / before, geometric means of the segments
    ci_low: float
    ci_high: float
    p_value: float


def noise_sd(values: np.ndarray) -> float:
    """The series' noise from the median of its successive differences (robust to steps)."""
    diffs = np.abs(np.diff(values))
    if diffs.size == 0:
        return 0.0
    sd = float(np.median(diffs) / (0.6745 * np.sqrt(2)))
    return sd if sd > 0 else float(np.std(values) or 0.0)


def _segment_sd(values: np.ndarray, ends: list[int]) -> float:
    """The pooled standard deviation around the means of the segments ending at `ends`."""
    bounds = [0, *ends]
    residual = np.concatenate([values[a:b] - values[a:b].mean() for a, b in pairwise(bounds)])
    df = values.size - (len(bounds) - 1)
    return float(np.sqrt(residual @ residual / df)) if df > 0 else 0.0


def _step(left: np.ndarray, right: np.ndarray, sd: float, df: int) -> tuple[float, ...]:
    d = float(right.mean() - left.mean())
    se = sd * np.sqrt(1 / left.size + 1 / right.size)
    if se <= 0:
        return np.exp(d), np.exp(d), np.exp(d), float(d == 0)
    half = float(t_dist.ppf(0.975, df)) * se
    p = float(2 * t_dist.sf(abs(d) / se, df))
    return float(np.exp(d)), float(np.exp(d - half)), float(np.exp(d + half)), p


def change_points(values: np.ndarray, commits: list[str]) -> list[ChangePoint]:
    """The change points of a series of log values, one per commit, oldest first."""
    import ruptures  # here: the store and the site import without it

    values = np.asarray(values, dtype=float)
    n = values.size
    if n < MIN_POINTS:
        return []
    sd = noise_sd(values)
    if sd <= 0:
        return []
    search = ruptures.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1)
    ends: list[int] = []
    for _ in range(NOISE_PASSES):
        ends = search.fit((values / sd).reshape(-1, 1)).predict(pen=PENALTY * np.log(n))
        # the spread around the segments found is a sharper noise estimate than differences
        refined = _segment_sd(values, ends)
        if not refined > 0 or abs(refined - sd) < 1e-3 * sd:
            break
        sd = refined
    bounds = [0, *ends]
    df = max(n - len(ends), 1)
    found = []
    for k in range(1, len(bounds) - 1):
        left, right = values[bounds[k - 1] : bounds[k]], values[bounds[k] : bounds[k + 1]]
        ratio, low, high, p = _step(left, right, sd, df)
        found.append(ChangePoint(bounds[k], commits[bounds[k] - 1], commits[bounds[k]],
                                 ratio, low, high, p))  # fmt: skip
    return found


@dataclass
class NewestCheck:
    """Whether a series' newest commit started a regression."""

    ratio: float  # newest (segment or commit) / the segment before
    p_value: float
    since: str  # the first commit of what is compared (the newest segment or commit)
    baseline: str  # the commit range of the segment compared against
    p_adjusted: float = float("nan")
    regression: bool = False


def newest_check(
    values: np.ndarray, commits: list[str], found: list[ChangePoint]
) -> NewestCheck | None:
    """The newest segment (a change point among the last RECENT commits) or the newest commit
    against the segment before it; None with too little history."""
    values = np.asarray(values, dtype=float)
    n = values.size
    if n < MIN_COMMITS:
        return None
    sd = noise_sd(values)
    recent = [c for c in found if c.index >= n - RECENT]
    if recent:
        start = recent[-1].index
        earlier = [c.index for c in found if c.index < start]
        base_start = earlier[-1] if earlier else 0
    else:
        start = n - 1
        base_start = found[-1].index if found else 0
    left, right = values[base_start:start], values[start:]
    if left.size < 2:
        return None
    ratio, _, _, p = _step(left, right, sd, max(n - 2, 1))
    return NewestCheck(ratio, p, commits[start], f"{commits[base_start]}..{commits[start - 1]}")


def decide(checks: list[NewestCheck], *, threshold: float, alpha: float) -> None:
    """Adjust the checks' p-values together and mark the regressions."""
    if not checks:
        return
    adjusted = false_discovery_control([c.p_value for c in checks], method="bh")
    for check, q in zip(checks, adjusted, strict=True):
        check.p_adjusted = float(q)
        check.regression = bool(q < alpha and check.ratio > 1 + threshold)
