"""`bench compare` of two simulated sweeps: counts, not times (`timing.instrument: simulated`).

Each case's row holds the median of its counted calls (`bench.measurement.simulated`) and the
calls' spread. A count moves between processes only by what the process itself varies (where
memory lands, the interpreter's state, how much memory a training step brings in), which two
things show: each side's own calls, and the references (identity's region is a call's overhead
alone, but conv3x3 and copy do real work that no change to a variant reaches). So each case's
ratio NEW / BASE gets an interval of +-noise, noise being the larger of

- the case's own spreads on the two sides added: each side's median may lie anywhere in that
  side's range, so their ratio anywhere within the sum (a training step whose last-level misses
  vary by a few percent from call to call varies as much between processes), and
- the between-process spread: the largest |NEW / BASE - 1| of the conv3x3 and copy references,

and the verdicts follow the wall-time gate's rules with that interval: `regression` when the
ratio exceeds 1 + threshold and the whole interval lies above 1; `improvement` likewise below;
`unchanged` when the interval lies inside the threshold's bounds; `undetermined` otherwise.
No p-values: the counts have no sampling distribution to speak of, only this small spread,
and one run per side is all the gate needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .sides import CompareInputError, Side

# what a simulated row holds, and `bench compare --metric` may name
COUNTED_METRICS = ("instructions", "estimated_cycles", "l1_misses", "ll_misses")
# what the gate decides on unless told: between processes of the same code a case's
# instructions moved by 0.1% (median; 2.5% at most) in the validation (docs/how-to/simulated.md),
# while the simulated last level's misses, and so the cycle estimate, jumped by up to 18% with
# where memory landed
DEFAULT_METRIC = "instructions"
DEFAULT_THRESHOLD = 0.02  # counts move about 1% between processes (docs/how-to/simulated.md)
# references whose counts measure the process, not the call's overhead alone
NOISE_REFERENCES = ("conv3x3", "copy")


@dataclass
class CountedBasis:
    """What a counted compare decided on, and how wide it took the noise to be."""

    metric: str
    between_processes: float  # the largest |ratio - 1| among the untouched references
    references: int  # how many references that figure was read from


def instrument_of(side: Side) -> str:
    """`wall` or `simulated`: what every run of a side measured with; mixed runs are refused."""
    kinds = {run.instrument for run in side.runs}
    if len(kinds) > 1:
        raise CompareInputError(
            f"{side.source} mixes instruments ({', '.join(sorted(kinds))}); a side is one"
        )
    return kinds.pop()


def check_instruments(base: Side, new: Side) -> str:
    """The instrument both sides measured with; a clear error when they differ."""
    base_kind, new_kind = instrument_of(base), instrument_of(new)
    if base_kind != new_kind:
        raise CompareInputError(
            f"{base.source} was measured with timing.instrument={base_kind} and {new.source} "
            f"with {new_kind}: counts and times cannot be compared; run both sides with the "
            "same instrument"
        )
    return base_kind


def between_processes(base: Side, new: Side, keys: list[str], metric: str) -> tuple[float, int]:
    """The largest |NEW / BASE - 1| of `metric` among the conv3x3 and copy references."""
    shifts = []
    for key in keys:
        row_base, row_new = base.case(key), new.case(key)
        if row_base.get("role") != "reference":
            continue
        if row_base.get("variant_label") not in NOISE_REFERENCES:
            continue
        ratio = count_ratio(row_base, row_new, metric)
        if np.isfinite(ratio):
            shifts.append(abs(ratio - 1))
    return (max(shifts) if shifts else float("nan")), len(shifts)


def count_ratio(row_base: pd.Series, row_new: pd.Series, metric: str) -> float:
    """NEW / BASE of a count (NaN where a side lacks it or it is zero)."""
    before, after = row_base.get(metric), row_new.get(metric)
    if before is None or after is None or pd.isna(before) or pd.isna(after) or not before:
        return float("nan")
    return float(after) / float(before)


def case_noise(row_base: pd.Series, row_new: pd.Series, between: float) -> float:
    """The relative half-width of a case's interval: its two sides' spreads added, or the
    processes' spread, whichever is larger."""
    own = [row.get("cycles_spread") for row in (row_base, row_new)]
    own = sum(float(value) for value in own if value is not None and not pd.isna(value))
    return max(own, between if np.isfinite(between) else 0.0)


def verdict(ratio: float, low: float, high: float, threshold: float) -> str:
    """The wall-time gate's rules on a count's interval (see the module docstring)."""
    upper, lower = 1 + threshold, 1 / (1 + threshold)
    if ratio > upper and low > 1:
        return "regression"
    if ratio < lower and high < 1:
        return "improvement"
    if lower <= low and high <= upper:
        return "unchanged"
    return "undetermined"


def check_metric(metric: str | None) -> str:
    """The metric to decide on (default `DEFAULT_METRIC`); a clear error for any other name."""
    metric = metric or DEFAULT_METRIC
    if metric not in COUNTED_METRICS:
        raise CompareInputError(f"--metric {metric!r}: allowed: {', '.join(COUNTED_METRICS)}")
    return metric
