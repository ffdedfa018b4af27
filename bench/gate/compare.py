"""`python -m bench compare BASE NEW`: did NEW get slower (or hungrier) than BASE?

BASE and NEW are run directories (or directories of run directories, as `bench ab` writes), or
pytest-benchmark JSON files saved with ``--benchmark-save-data`` (read by `bench.gate.sides`).
Cases are matched by key. This module tests and decides; `bench.gate.render` writes the verdict
as Markdown and JSON.

The model. A sweep times every case in rounds, one pass over the whole sweep per round, so a
case's rounds lie minutes apart and each saw its own state of the machine. The round, not the
sample, is the unit of evidence: samples inside a round share that state and are not
independent. Per case and side, each round (of each run) gives the log of its median time and
the log of its reference's level in the same round: by default the copy of the same tensor
timed right after each sample, its level taken so that time / copy is the median of the
samples' own ratios (each sample divided by the copy beside it, in the machine's state of that
moment: `bench.gate.model.round_levels`); or ``--reference NAME``'s median in that round.
(pytest-benchmark JSON without the suite's rounds counts each of its samples as a round.)

The log ratio NEW / BASE is estimated by a regression over the rounds of both sides on a side
indicator and the log reference (`bench.gate.model`). The paired copy's slope is fitted within
the sides and held between 0 (raw time: the copy tells nothing about this case) and 1 (time
divided by the copy: it moves exactly with the machine), so raw time adds evidence where a copy
in cache is noise, and the copy takes out the machine's drift where it tracks it. A reference
named with ``--reference`` is divided out as asked (slope 1); ``--absolute`` compares raw time
(slope 0).

Between processes. Two processes of the same code differ by more than one process's rounds
do (where memory lands, which core, the caches' state), so the ratio's variance has two parts:
the rounds' spread around their own run's mean, and a between-run variance, one figure for the
suite (`bench.gate.model.between_runs`). With two or more runs on a side (`bench ab --runs 2`)
it is estimated from how each case's runs scatter around their side's mean, and each case's
own run spread moderates it (empirical Bayes, as limma moderates a gene's variance); with one
run per side, from how the cases' log ratios scatter around the suite's centre, each variant
weighing the same (shared among its cases) and the references beside them (identity,
conv3x3: no change reaches them) counting as variants too, so a variant that moved as a
whole is one vote (`bench.gate.model.suite_between_runs`). Both estimates match (weighted)
medians. With one run per side and too few cases or variants left to estimate it, no figure
is borrowed: every case stays `undetermined` and the compare cannot tell. The 95% interval and the two-sided p-value come from a t distribution whose degrees of
freedom combine both parts (Satterthwaite).

One run per side. The suite's figure is one variance for every case, but the paired copy of a
case also lands in its own process's state (its tensor in another cache or memory state), and
a copy that jumped between the two processes while the case did not makes the case look
changed. No single run shows that (with two or more runs per side, each case's own run spread
does). So there, when the times are normalised, a regression or improvement also needs the
case's raw time over the machine's drift as the copies of the whole suite show it (the median
of their shifts between the two processes, which no single copy moves), tested alike (its own
suite-wide between-run variance, adjusted over the suite by Benjamini-Hochberg), to have moved
significantly the same way: both tests must reject, so the pair keeps the gate's `alpha`. A
case that fails only this check stays `undetermined`, its `reason` says so, and more runs per
side would tell.

Two or more runs per side. Each case's own run spread shows a copy that jumped alone, but not a
machine that was steady within each side and slower on one (a neighbour busy through the middle
of `bench ab`'s base, new, new, base): within the sides the copies then hardly move, the copy's
slope cannot be learnt there and falls toward 0 (raw time), the drift stays in the case's time,
and the runs of each side agree. So a regression or improvement also needs the case's time over
its own copy (slope 1), tested alike (its own between-run variance, from the runs, adjusted over
the suite), to have moved significantly the same way.

The suite. Every tested case is a test, so the p-values are adjusted together (Benjamini-
Hochberg): the expected share of false findings among flagged cases is at most `alpha` (0.05),
and when nothing changed, the chance that any case is flagged is about `alpha`. Each tested case
gets one verdict:

- `regression`: its adjusted p-value is below `alpha` AND its ratio exceeds 1 + threshold (10%):
  significant, and large enough to matter; `improvement` likewise below 1 / (1 + threshold);
- `unchanged`: its 95% interval lies inside [1 / (1 + threshold), 1 + threshold]: shown to be
  within the threshold, not merely not shown to be outside it;
- `undetermined`: neither (or past the threshold against its reference while its second
  test, the time over the suite's drift or over its own copy, did not move significantly):
  the data cannot tell.
  Each case carries the smallest slowdown this data would have found (`detectable_ratio`:
  at `alpha` with 80% power, before the suite's adjustment); more rounds or runs narrow it.

The suite's one figure is the geometric mean of the tested cases' ratios with a 95% interval over
cases. FLOPs, MACs, bytes, parameters and peak memory are exact, so any change in them is
reported.

A case needs two rounds on each side to be tested (`insufficient` otherwise). A case measured
while the machine was disturbed (flagged contended, contention_unchecked, gpu_throttled or
gpu_shared on either side) gets no verdict from its times: it is `inconclusive`. The sample
flags (few_samples, unstable) do not: the spread between rounds already weighs them.

The compare never says "no regression" when it cannot tell: an undetermined case whose
estimate lies past 1 + threshold (its interval cannot rule the regression out) makes the
verdict `cannot tell`; and a geometric mean whose whole interval lies past 1 + threshold is a
regression of the suite, even where no single case could be called.

Exit codes: 0 no regression, 1 regression, 2 bad input, 3 cannot tell or inconclusive (some
case past the threshold undecided, or measured on a disturbed machine; with ``--strict``, also
any undetermined case).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

from ..statistics import geometric_mean_interval
from . import counted
from .counted import CountedBasis
from .model import (
    MIN_ROUNDS,
    MIN_SUITE_CASES,
    MIN_SUITE_VARIANTS,
    BetweenRuns,
    CaseFit,
    Rounds,
    RoundTest,
    between_runs,
    case_test,
    fit_case,
    round_levels,
)
from .sides import GROUP_KEYS, CompareInputError, Side, _group, load_side

__all__ = ["CompareInputError", "Comparison", "compare", "compare_sides", "load_side"]

# the second test a regression or improvement must pass: one run per side, the raw time over
# the suite's drift; two or more, the time over the case's own copy
DRIFT_CHECK = "time over the machine's drift"
COPY_CHECK = "time over the case's own copy"
CHECK_WHY = {
    DRIFT_CHECK: "the copy may have moved alone between the two processes",
    COPY_CHECK: "the machine may have moved between the sides while the copy, steady within "
    "them, showed no slope to divide it out by",
}
WALL_THRESHOLD = 0.10  # wall time's default; counts have their own (`bench.gate.counted`)
EXACT_METRICS = ("flops", "macs", "bytes_moved", "peak_memory_bytes", "params")
# verdicts drawn from data that holds: the cases the suite's figures cover
TESTED = ("regression", "improvement", "unchanged", "undetermined")
VERDICTS = (*TESTED, "inconclusive", "insufficient")  # every verdict a case can get


def case_rounds(side: Side, key: str, reference: str | None) -> Rounds:
    """The case's per-round medians from every run of the side, each with its reference's:
    the paired copy where `reference` is copy and pairs exist, else the median of the
    `reference` case at the case's shape in the same round (its whole run's median if it lacks
    that round). A run that lacks the reference is bad input: normalised and raw times are
    never mixed."""
    times, references, runs, samples = [], [], [], 0
    for index, run in enumerate(side.runs):
        if key not in run.cases.index:
            continue
        values = run.samples.get(key, np.array([]))
        samples += values.size
        levels = round_levels(values, run.paired_references.get(key), run.sample_rounds(key))
        times += levels.times.tolist()
        runs += [index] * levels.rounds.size
        if reference is None:
            continue
        if reference == "copy" and key in run.paired_references:
            references += levels.references.tolist()
            continue
        anchor = run.reference_key(reference, _group(run.cases.loc[key]))
        if anchor is None:
            raise CompareInputError(
                f"{run.source}: {run.cases.loc[key]['label']} has nothing to divide by: no "
                f"`{reference}` reference at its shape and setting"
                + (" and no paired copy samples" if reference == "copy" else "")
                + "; both sides need it (rerun with references), or compare raw times "
                "with --absolute"
            )
        anchor_values = run.samples[anchor]
        anchor_levels = round_levels(anchor_values, None, run.sample_rounds(anchor))
        anchor_rounds = dict(zip(anchor_levels.rounds.tolist(), anchor_levels.times, strict=True))
        whole = float(np.median(anchor_values))
        references += [anchor_rounds.get(r, whole) for r in levels.rounds.tolist()]
    return Rounds(
        np.asarray(times, dtype=float),
        None if reference is None else np.asarray(references, dtype=float),
        samples,
        np.asarray(runs, dtype=int),
    )


@dataclass
class CaseComparison:
    key: str
    label: str
    # regression, improvement, unchanged, undetermined, inconclusive, insufficient
    verdict: str
    ratio: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    p_value: float = float("nan")
    base_median: float = float("nan")  # seconds per call, median over the rounds' medians
    new_median: float = float("nan")
    samples_base: int = 0
    samples_new: int = 0
    raw_ratio: float = float("nan")  # new / base of raw times, rounds' medians
    reason: str = ""  # why a verdict is inconclusive, insufficient or held undetermined
    fields: dict[str, Any] = field(default_factory=dict)  # what identifies the case
    rounds_base: int = 0
    rounds_new: int = 0
    runs_base: int = 0
    runs_new: int = 0
    p_adjusted: float = float("nan")  # over the suite (Benjamini-Hochberg)
    # the second test a change must pass where times are normalised (`Comparison.check`)
    check_ratio: float = float("nan")
    check_p_adjusted: float = float("nan")
    reference_slope: float = float("nan")  # how far the reference was divided out
    df: float = 0.0
    detectable_ratio: float = float("nan")  # the smallest slowdown this data would find


@dataclass
class Comparison:
    base: Side
    new: Side
    threshold: float
    alpha: float
    reference: str | None
    strict: bool = False  # undetermined cases make the exit code 3
    cases: list[CaseComparison] = field(default_factory=list)
    exact_changes: list[dict[str, Any]] = field(default_factory=list)
    only_base: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)
    drift: float = float("nan")  # new / base of the reference itself: the machine's drift
    between_runs: BetweenRuns = field(default_factory=BetweenRuns)
    # one run per side, and too few cases left untouched to say how processes differ
    spread_unknown: bool = False
    check: str = ""  # the second test's measure: DRIFT_CHECK, COPY_CHECK or none
    counted: CountedBasis | None = None  # simulated sides: decided on counts, not times

    def with_verdict(self, verdict: str) -> list[CaseComparison]:
        return [c for c in self.cases if c.verdict == verdict]

    @property
    def regressions(self) -> list[CaseComparison]:
        return self.with_verdict("regression")

    @property
    def improvements(self) -> list[CaseComparison]:
        return self.with_verdict("improvement")

    @property
    def inconclusive(self) -> list[CaseComparison]:
        return self.with_verdict("inconclusive")

    @property
    def undetermined(self) -> list[CaseComparison]:
        return self.with_verdict("undetermined")

    @property
    def tested(self) -> list[CaseComparison]:
        return [c for c in self.cases if c.verdict in TESTED]

    @property
    def geometric_mean(self) -> tuple[float, float, float, int]:
        """The suite in one figure: the geometric mean of the tested cases' ratios, its 95%
        interval (a t-interval over the cases' log ratios) and how many cases it covers."""
        ratios = [c.ratio for c in self.tested if np.isfinite(c.ratio) and c.ratio > 0]
        if not ratios:
            return float("nan"), float("nan"), float("nan"), 0
        return (*geometric_mean_interval(ratios), len(ratios))

    @property
    def cannot_tell(self) -> list[CaseComparison]:
        """The undetermined cases that could be regressions: their estimate is past the
        threshold (so their interval cannot rule it out), or no spread between processes was
        left to test them with."""
        high = 1 + self.threshold
        return [c for c in self.undetermined if self.spread_unknown or c.ratio > high]

    @property
    def suite_finding(self) -> str:
        """`regression` when the suite's geometric mean and its whole interval lie past
        1 + threshold, `improvement` when below 1 / (1 + threshold), else ''."""
        _, low, high, covered = self.geometric_mean
        if covered < 2 or not np.isfinite(low):
            return ""
        if low > 1 + self.threshold:
            return "regression"
        return "improvement" if high < 1 / (1 + self.threshold) else ""

    @property
    def verdict(self) -> str:
        """The compare in one word: regression (a case, or the suite's mean), cannot tell (a
        case past the threshold that the data cannot decide), inconclusive, undetermined
        (`strict` only: any case not shown unchanged or changed) or no regression."""
        if self.regressions or self.suite_finding == "regression":
            return "regression"
        if self.cannot_tell:
            return "cannot tell"
        if self.inconclusive:
            return "inconclusive"
        return "undetermined" if self.strict and self.undetermined else "no regression"

    @property
    def exit_code(self) -> int:
        """0 no regression, 1 regression, 3 cannot tell, inconclusive or (with `strict`)
        undetermined."""
        codes = {"regression": 1, "cannot tell": 3, "inconclusive": 3, "undetermined": 3}
        return codes.get(self.verdict, 0)


def compare(
    base_path: str | Path,
    new_path: str | Path,
    *,
    threshold: float | None = None,
    alpha: float = 0.05,
    reference: str | None = "copy",
    strict: bool = False,
    metric: str | None = None,
) -> Comparison:
    """Compare two sides case by case (see the module docstring); simulated sides on their
    counts (`bench.gate.counted`). `threshold` defaults to the instrument's."""
    if (threshold is not None and not threshold > 0) or not 0 < alpha < 1:
        raise CompareInputError(
            f"threshold={threshold} and alpha={alpha}: allowed: threshold > 0, 0 < alpha < 1"
        )
    return compare_sides(
        load_side(base_path), load_side(new_path), threshold=threshold, alpha=alpha,
        reference=reference, strict=strict, metric=metric,
    )  # fmt: skip


def compare_sides(
    base: Side,
    new: Side,
    *,
    threshold: float | None = None,
    alpha: float = 0.05,
    reference: str | None = "copy",
    strict: bool = False,
    metric: str | None = None,
) -> Comparison:
    """`compare` on sides already loaded."""
    base_keys, new_keys = base.keys, new.keys
    common = [k for k in base_keys if k in set(new_keys)]
    if not common:
        raise CompareInputError(f"{base.source} and {new.source} have no case in common")
    simulated = counted.check_instruments(base, new) == "simulated"
    if threshold is None:
        threshold = counted.DEFAULT_THRESHOLD if simulated else WALL_THRESHOLD
    result = Comparison(base, new, threshold, alpha, None if simulated else reference, strict)
    result.only_base = [base.case(k)["label"] for k in base_keys if k not in set(new_keys)]
    result.only_new = [new.case(k)["label"] for k in new_keys if k not in set(base_keys)]
    if simulated:
        _compare_counts(result, common, counted.check_metric(metric))
        return result
    drifts = []
    fits: dict[str, CaseFit] = {}
    rounds: dict[str, tuple[Rounds, Rounds]] = {}  # BASE's and NEW's, per fitted case
    # references other than the one divided by: no change under test reaches them
    untouched: dict[str, tuple[CaseFit, tuple[Rounds, Rounds]]] = {}
    group_of: dict[str, str] = {}  # a case's variant, for the one-run-per-side spread
    for key in common:
        row_base, row_new = base.case(key), new.case(key)
        _exact_changes(result, row_base, row_new)
        if row_base.get("role") == "reference":
            # references measure the machine, not the code: not gated, but they show its drift
            if row_base["variant_label"] == (reference or "copy"):
                b, n = case_rounds(base, key, None), case_rounds(new, key, None)
                if b.n and n.n:
                    drifts.append(np.median(n.times) / np.median(b.times))
            elif not _flag_reason(base.flags(key), new.flags(key)):
                # and, with one run per side, how much processes differ where nothing changed
                try:
                    sides = (case_rounds(base, key, reference), case_rounds(new, key, reference))
                except CompareInputError:  # nothing to divide it by: it says nothing here
                    continue
                fit = fit_case(*sides, slope=None if reference == "copy" else 1.0)
                if fit is not None:
                    untouched[key] = fit, sides
                    group_of[key] = f"reference {row_base['variant_label']}"
            continue
        case, fit, sides = _fit_case(base, new, key, row_base, reference)
        result.cases.append(case)
        if fit is not None:
            fits[key], rounds[key] = fit, sides
    # the undisturbed cases say how much processes differ; every tested case carries it
    undisturbed = [c.key for c in result.cases if c.key in fits and c.verdict != "inconclusive"]
    group_of.update({c.key: c.fields.get("variant_label") or c.label for c in result.cases})
    result.between_runs = between_runs(
        [fits[k] for k in undisturbed],
        [group_of[k] for k in undisturbed],
        [(fit, group_of[k]) for k, (fit, _) in untouched.items()],
    )
    for case in result.cases:
        if case.key in fits:
            _test_case(case, fits[case.key], result.between_runs, alpha)
    result.spread_unknown = result.between_runs.source == "none" and any(
        f.runs_share > 0 for f in fits.values()
    )
    checks: dict[str, RoundTest] = {}
    rounds.update({k: sides for k, (_, sides) in untouched.items()})
    if result.between_runs.source == "suite" and reference is not None:
        # one run per side: a case's own copy may have moved alone; its time must agree
        result.check = DRIFT_CHECK
        checks = _drift_checks(rounds, [*undisturbed, *untouched], group_of, alpha)
    elif result.between_runs.source == "runs" and reference == "copy":
        # runs per side: the machine may have moved between the sides while steady within
        # them, where the copy's slope cannot be learnt; the time over the copy must agree
        result.check = COPY_CHECK
        fits_over_copy = {key: fit_case(b, n, slope=1.0) for key, (b, n) in rounds.items()}
        checks = _checks(fits_over_copy, [*undisturbed, *untouched], group_of, alpha)
    if result.spread_unknown:  # too few untouched cases to say how processes differ
        _hold_all(result.cases, result.between_runs)
    else:
        _decide(result.cases, threshold=threshold, alpha=alpha, checks=checks, check=result.check)
    if drifts:
        result.drift = float(np.median(drifts))
    return result


def _compare_counts(result: Comparison, keys: list[str], metric: str) -> None:
    """Simulated sides: each case's count NEW / BASE against its noise (`bench.gate.counted`)."""
    base, new = result.base, result.new
    between, references = counted.between_processes(base, new, keys, metric)
    result.counted = CountedBasis(metric, between, references)
    for key in keys:
        row_base, row_new = base.case(key), new.case(key)
        _exact_changes(result, row_base, row_new)
        if row_base.get("role") == "reference":
            continue  # they measure the process, not the code
        ratio = counted.count_ratio(row_base, row_new, metric)
        noise = counted.case_noise(row_base, row_new, between)
        case = CaseComparison(
            key, row_base["label"], "undetermined",
            ratio=ratio, ci_low=ratio / (1 + noise), ci_high=ratio * (1 + noise),
            raw_ratio=ratio, base_median=float(row_base.get(metric)),
            new_median=float(row_new.get(metric)),
            fields={f: plain_value(row_base.get(f)) for f in ("variant_label", *GROUP_KEYS)},
            rounds_base=1, rounds_new=1, runs_base=1, runs_new=1,
        )  # fmt: skip
        if not np.isfinite(ratio):
            case.verdict, case.reason = "insufficient", f"no {metric} on a side"
        elif not np.isfinite(between):
            case.reason = (
                "no conv3x3 or copy reference on both sides to show how counts differ between "
                "processes: sweep with references"
            )
            result.spread_unknown = True
        else:
            case.verdict = counted.verdict(ratio, case.ci_low, case.ci_high, result.threshold)
        result.cases.append(case)


def _hold_all(cases: list[CaseComparison], between: BetweenRuns) -> None:
    """Every case undetermined: with one run per side, the spread between processes is read
    from the cases no change touched, and too few are left to read it from."""
    for case in cases:
        if case.verdict == "undetermined":
            case.reason = (
                f"one run per side, and {between.cases} case(s) of {between.variants} "
                f"variant(s) to read how much processes differ (at least {MIN_SUITE_CASES} "
                f"cases of {MIN_SUITE_VARIANTS} variants, references included): run two per "
                "side (bench ab --runs 2) or sweep more variants"
            )


def _fit_case(
    base: Side, new: Side, key: str, row: pd.Series, reference: str | None
) -> tuple[CaseComparison, CaseFit | None, tuple[Rounds, Rounds]]:
    """The case's fit from its rounds, before the suite's between-run variance is known
    (verdict `undetermined` until `_decide`), and the rounds of BASE and NEW."""
    b, n = case_rounds(base, key, reference), case_rounds(new, key, reference)
    case = CaseComparison(
        key, row["label"], "undetermined",
        base_median=float(np.median(b.times)) if b.n else float("nan"),
        new_median=float(np.median(n.times)) if n.n else float("nan"),
        samples_base=b.samples, samples_new=n.samples,
        fields={f: plain_value(row.get(f)) for f in ("variant_label", *GROUP_KEYS)},
        rounds_base=b.n, rounds_new=n.n,
        runs_base=len(set(b.run_ids.tolist())), runs_new=len(set(n.run_ids.tolist())),
    )  # fmt: skip
    if b.n and n.n:
        case.raw_ratio = float(np.exp(np.log(n.times).mean() - np.log(b.times).mean()))
    # the paired copy weighs in as far as it tracks the case; a reference named is divided out
    fit = fit_case(b, n, slope=None if reference == "copy" else 1.0)
    if fit is None:
        case.verdict = "insufficient"
        case.reason = f"{b.n} / {n.n} rounds; a test needs {MIN_ROUNDS} on each side"
        return case, None, (b, n)
    reason = _flag_reason(base.flags(key), new.flags(key))
    if reason:
        case.verdict, case.reason = "inconclusive", reason  # a disturbed machine: no verdict
    return case, fit, (b, n)


def _drift_checks(
    rounds: dict[str, tuple[Rounds, Rounds]],
    undisturbed: list[str],
    group_of: dict[str, str],
    alpha: float,
) -> dict[str, RoundTest]:
    """One run per side: each case's raw time, NEW / BASE, over the machine's drift between
    the two processes as the copies of the whole suite show it (the median of their shifts),
    tested with a between-run variance of its own from the suite: what the case's time did,
    whatever its own copy did."""
    shifts = [np.log(n.references).mean() - np.log(b.references).mean()
              for b, n in (rounds[k] for k in undisturbed)]  # fmt: skip
    drift = float(np.nanmedian(shifts)) if np.isfinite(shifts).any() else 0.0

    def level(side: Rounds, value: float) -> Rounds:  # one reference for every round
        return Rounds(side.times, np.full(side.n, value), side.samples, side.runs)

    fits = {key: fit_case(level(b, 1.0), level(n, np.exp(drift)), slope=1.0)
            for key, (b, n) in rounds.items()}  # fmt: skip
    return _checks(fits, undisturbed, group_of, alpha)


def _checks(
    fits: dict[str, CaseFit | None], undisturbed: list[str], group_of: dict[str, str], alpha: float
) -> dict[str, RoundTest]:
    """Each case's second test, from `fits`, with a between-run variance of its own read from
    the undisturbed cases (from their runs, or with one run per side from the suite)."""
    kept = [k for k in undisturbed if fits[k] is not None]
    between = between_runs([fits[k] for k in kept], [group_of[k] for k in kept])
    tests = {
        key: case_test(fit, between, alpha=alpha) for key, fit in fits.items() if fit is not None
    }
    if between.source == "none":  # nothing to test the times against: no time moved for sure
        for test in tests.values():
            test.p_value = 1.0
    return tests


def _test_case(case: CaseComparison, fit: CaseFit, between: BetweenRuns, alpha: float) -> None:
    tested = case_test(fit, between, alpha=alpha)
    case.ratio, case.ci_low, case.ci_high = tested.ratio, tested.ci_low, tested.ci_high
    case.p_value, case.reference_slope, case.df = tested.p_value, tested.slope, tested.df
    case.detectable_ratio = tested.detectable


def _decide(
    cases: list[CaseComparison],
    *,
    threshold: float,
    alpha: float,
    checks: dict[str, RoundTest] | None = None,
    check: str = "",
) -> None:
    """The suite's decision: p-values adjusted together (Benjamini-Hochberg) over the tested
    cases; a regression is significant after adjustment and slower than 1 + threshold, a case
    is unchanged when its interval lies inside the threshold's bounds, undetermined otherwise.
    With `checks` (the `check` named), a regression or improvement also needs its case's
    second test, adjusted likewise, significant the same way."""
    gated = [c for c in cases if c.verdict == "undetermined"]
    if not gated:
        return
    adjusted = false_discovery_control([c.p_value for c in gated], method="bh")
    checked = [c for c in gated if c.key in (checks or {})]
    if checked:
        p_values = [checks[c.key].p_value for c in checked]
        check_q = false_discovery_control(p_values, method="bh")
        for case, q in zip(checked, check_q, strict=True):
            case.check_ratio, case.check_p_adjusted = checks[case.key].ratio, float(q)
    low, high = 1 / (1 + threshold), 1 + threshold
    for case, q in zip(gated, adjusted, strict=True):
        case.p_adjusted = float(q)
        changed = "regression" if case.ratio > high else "improvement" if case.ratio < low else ""
        if q < alpha and changed and checks:
            slower = case.check_ratio > 1
            if not (case.check_p_adjusted < alpha and slower == (changed == "regression")):
                case.reason = (
                    f"{changed} against its reference (slope {case.reference_slope:.2f}), but "
                    f"its {check} did not move significantly ({case.check_ratio:.3f}, adjusted "
                    f"p {case.check_p_adjusted:.2g}); {CHECK_WHY[check]}"
                )
                continue  # undetermined: more runs per side would tell
        if q < alpha and changed:
            case.verdict = changed
        elif low <= case.ci_low and case.ci_high <= high:
            case.verdict = "unchanged"


def plain_value(value: Any) -> Any:
    """A JSON-ready scalar from a pandas cell."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str) and value in ("True", "False"):
        return value == "True"
    if value is pd.NA:
        return None
    return value


def _flag_reason(base_flags: list[str], new_flags: list[str]) -> str:
    parts = [
        f"{side} flagged {', '.join(flags)}"
        for side, flags in (("BASE", base_flags), ("NEW", new_flags))
        if flags
    ]
    return "; ".join(parts)


def _exact_changes(result: Comparison, row_base: pd.Series, row_new: pd.Series) -> None:
    for metric in EXACT_METRICS:
        before, after = row_base.get(metric), row_new.get(metric)
        if before is None or after is None or pd.isna(before) or pd.isna(after):
            continue
        if float(before) != float(after):
            result.exact_changes.append(
                {"case": row_base["label"], "metric": metric, "base": before, "new": after}
            )


def parse_threshold(text: str) -> float:
    """``10%`` or ``0.1`` -> 0.1."""
    text = str(text).strip()
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise CompareInputError(
            f"--threshold {text!r}: allowed: a percentage like 10% or a fraction like 0.1"
        ) from None
