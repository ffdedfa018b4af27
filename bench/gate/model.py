"""The gate's statistics: one case's NEW / BASE from its rounds, and the variance between
processes that no single process's rounds can see.

A case's rounds on a side come from one or more runs (processes). Per round, the log time less
`slope` x the log of its reference is modelled as

    z = side mean + run effect + round noise,

with round noise of variance `within` (estimated from the case's rounds around their own
run's mean) and run effects of variance `between` (one figure for the whole suite, as one case
has too few runs to estimate it alone: `between_runs`; with runs, each case's own run spread
moderates it, `case_test`). The log ratio NEW / BASE is the difference of the sides' means; its
variance is the rounds' share, within x (1/rounds BASE + 1/rounds NEW), plus the runs' share,
between x (1/runs BASE + 1/runs NEW). With one run per side the runs' share is the whole gap
between a compare of two processes and the rounds of one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import digamma, polygamma
from scipy.stats import chi2
from scipy.stats import t as t_dist

MIN_ROUNDS = 2  # per side: a spread between rounds needs two of them
POWER = 0.80  # the power at which the smallest detectable change is given
MEDIAN_EFFICIENCY = 2 / np.pi  # a median-matched estimate is worth this share of its cases' df
MIN_SUITE_CASES = 8  # fewer cases than this say too little of how processes differ
MIN_SUITE_VARIANTS = 3  # one run per side: with fewer, one changed variant is half the vote
OUTLIER_Z = 3.0  # with one run per side, cases this far out changed: not part of the spread
OUTLIER_PASSES = 5


@dataclass
class Rounds:
    """A case's evidence on one side: per round of each run, the median time and the median of
    its reference in that round (None: raw times), and which run each round came from."""

    times: np.ndarray
    references: np.ndarray | None
    samples: int
    runs: np.ndarray | None = None  # None: every round from one run

    @property
    def n(self) -> int:
        return self.times.size

    @property
    def run_ids(self) -> np.ndarray:
        return np.zeros(self.n, int) if self.runs is None else np.asarray(self.runs)[: self.n]


@dataclass
class RoundLevels:
    """One case's rounds, each as one time and one reference level (`round_levels`)."""

    rounds: np.ndarray  # the round numbers, ascending
    times: np.ndarray  # seconds per call: the median of the round's samples
    references: np.ndarray  # the paired copy's level in the round (NaN: no pairs)
    samples: np.ndarray  # samples in the round


def round_levels(
    seconds: np.ndarray, references: np.ndarray | None, rounds: np.ndarray | list[int]
) -> RoundLevels:
    """Per round: the median time, and the level of the copy paired with the samples, taken
    so that time / level is the median of the samples' own ratios: each sample over the copy
    timed right after it, in the machine's state of that moment. On a machine whose speed
    wanders within a round, that cancels what a ratio of the round's two medians keeps."""
    seconds = np.asarray(seconds, dtype=float)
    rounds = np.asarray(rounds, dtype=int)[: seconds.size]
    paired = (
        np.full(seconds.size, np.nan)
        if references is None
        else np.asarray(references, dtype=float)[: seconds.size]
    )
    numbers = np.unique(rounds)
    times, levels, counts = [], [], []
    for number in numbers:
        inside = rounds == number
        time = float(np.median(seconds[inside]))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.log(seconds[inside]) - np.log(paired[inside])
        ratios = ratios[np.isfinite(ratios)]  # the samples that have a positive pair
        times.append(time)
        levels.append(time / np.exp(np.median(ratios)) if ratios.size else np.nan)
        counts.append(int(inside.sum()))
    return RoundLevels(numbers, np.array(times), np.array(levels), np.array(counts))


@dataclass
class CaseFit:
    """A case's log ratio and what its own rounds say of its variance (before `between`)."""

    log_ratio: float
    within: float  # variance of one round around its run's mean (log scale)
    within_df: int
    rounds_share: float  # the log ratio's variance from the rounds, per unit of `within`
    rounds_mean_share: float  # of which the sides' means: 1 / rounds BASE + 1 / rounds NEW
    runs_share: float  # 1 / runs BASE + 1 / runs NEW: per unit of `between` (0: in `within`)
    slope: float  # how far the reference was divided out: 0 raw time, 1 divided
    run_spread: float  # run means' squared deviations from their side's mean, summed
    run_spread_df: int  # runs BASE + runs NEW - 2
    rounds_per_run: float  # harmonic mean: what `within` weighs in a run's mean


def held_slope(dy: np.ndarray, dc: np.ndarray, *, flat: float = 1.0) -> float:
    """The least-squares slope of centred log time `dy` on centred log reference `dc`, held in
    [0, 1] (the reference never moves a case more than itself, nor against it); `flat` where
    the reference did not move at all."""
    scc = float(dc @ dc)
    return flat if scc <= 0 else float(np.clip((dc @ dy) / scc, 0.0, 1.0))


def fit_case(base: Rounds, new: Rounds, *, slope: float | None = None) -> CaseFit | None:
    """The log ratio NEW / BASE from a regression of log time over the rounds of both sides on
    a side indicator and the log reference: with the reference's `slope` given (1: divide by
    it), or fitted within the sides and held in [0, 1] when None (raw time adds evidence where
    a copy in cache is noise; the copy takes out the machine's drift where it tracks it). None
    with fewer than `MIN_ROUNDS` rounds on a side or no degree of freedom left."""
    if base.n < MIN_ROUNDS or new.n < MIN_ROUNDS:
        return None
    if np.any(base.times <= 0) or np.any(new.times <= 0):
        return None
    side = np.r_[np.zeros(base.n, bool), np.ones(new.n, bool)]
    y = np.log(np.r_[base.times, new.times])
    c = np.zeros_like(y)
    fitted_slope = False
    if base.references is None or new.references is None:
        slope = 0.0
    else:
        c = np.log(np.r_[base.references, new.references])
        dc = c - np.where(side, c[side].mean(), c[~side].mean())  # within the sides
        if slope is None:
            slope = held_slope(y - np.where(side, y[side].mean(), y[~side].mean()), dc)
            fitted_slope = 0 < slope < 1  # a slope on the boundary was not fitted freely
    z = y - slope * c
    # a run is a (side, run id) pair; its mean takes the run's effect out of the rounds' spread
    run_key = np.r_[base.run_ids, new.run_ids + base.run_ids.max() + 1]
    keys, run_index, run_sizes = np.unique(run_key, return_inverse=True, return_counts=True)
    run_means = np.bincount(run_index, weights=z) / run_sizes
    within_df = y.size - keys.size - int(fitted_slope)
    residual = z - run_means[run_index]
    # one round per run (a slow case at its time cap): the rounds' spread around their side's
    # mean holds the runs' spread too, so nothing is added for it
    pooled = within_df < 1
    if pooled:
        within_df = y.size - 2 - int(fitted_slope)
        if within_df < 1:
            return None
        residual = z - np.where(side, z[side].mean(), z[~side].mean())
    within = float(residual @ residual) / within_df
    rounds_share = 1 / base.n + 1 / new.n
    if fitted_slope:  # the fitted slope's own uncertainty, carried into the difference
        rounds_share += (c[side].mean() - c[~side].mean()) ** 2 / float(dc @ dc)
    run_side = np.r_[np.zeros(np.unique(base.run_ids).size, bool),
                     np.ones(np.unique(new.run_ids).size, bool)]  # fmt: skip
    spread = run_means - np.where(run_side, run_means[run_side].mean(),
                                  run_means[~run_side].mean())  # fmt: skip
    return CaseFit(
        log_ratio=float(z[side].mean() - z[~side].mean()),
        within=within,
        within_df=int(within_df),
        rounds_share=float(rounds_share),
        rounds_mean_share=float(1 / base.n + 1 / new.n),
        runs_share=0.0 if pooled else float(1 / (~run_side).sum() + 1 / run_side.sum()),
        slope=float(slope),
        run_spread=float(spread @ spread),
        run_spread_df=0 if pooled else int(keys.size - 2),
        rounds_per_run=float(keys.size / np.sum(1 / run_sizes)),
    )


@dataclass
class BetweenRuns:
    """The variance of one run's mean around its side's (log scale), for every case."""

    variance: float = 0.0
    df: float = float("inf")
    source: str = "none"  # runs: from each side's runs; suite: from the cases' spread
    cases: int = 0
    # runs only: how many degrees of freedom the suite's figure is worth against a case's own
    # runs (inf: the cases' run spreads scatter no more than chance, so the suite's holds)
    prior_df: float = float("inf")
    variants: int = 0  # suite only: the variants (and references) the cases belong to

    @property
    def relative_sd(self) -> float:
        """One standard deviation of a run's mean, as a share of it (0.02: 2%)."""
        return float(np.exp(np.sqrt(self.variance)) - 1)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value at which half the weight lies on either side (the lower one at a tie)."""
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def _median_matched(statistic, df: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The smallest variance v >= 0 at which the (weighted) median of chi2.cdf(statistic(v),
    df) over the cases is at most 1/2; `statistic` falls as v grows."""
    weights = np.ones(len(df)) if weights is None else weights

    def excess(v: float) -> float:
        return _weighted_median(chi2.cdf(statistic(v), df), weights) - 0.5

    if excess(0.0) <= 0:
        return 0.0
    high = 1e-6
    while excess(high) > 0:
        high *= 4
        if high > 1e3:
            return high
    low = 0.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if excess(middle) > 0 else (low, middle)
    return high


def _prior_df(ratios: np.ndarray, df: np.ndarray) -> float:
    """limma's moment estimate (Smyth 2004) of the prior's degrees of freedom d0, from each
    case's run-mean variance over what the suite predicts for it: were every case's variance
    the predicted one, the ratios would scatter as chi-square(df) / df; wider scatter means
    the cases differ, and each case's own runs must weigh more."""
    logs = np.log(np.maximum(ratios, 1e-4)) - digamma(df / 2) + np.log(df / 2)
    excess = float(np.var(logs, ddof=1) - np.mean(polygamma(1, df / 2)))
    low, high = 1e-6, 1e8  # trigamma falls from ~1e12 to ~1e-8 between these
    if excess <= float(polygamma(1, high)):
        return float("inf")
    return float(2 * brentq(lambda x: float(polygamma(1, x)) - excess, low, high))


def between_runs(
    fits: list[CaseFit],
    groups: list[str] | None = None,
    untouched: list[tuple[CaseFit, str]] = (),
) -> BetweenRuns:
    """The suite's between-run variance, matched by medians so that the cases that did change
    do not move it.

    With two or more runs on a side (most cases), from the runs: each case's run means
    scatter around their side's mean as chi-square(runs - 2) x (between + within / rounds per
    run), whatever the change did (both runs of a side carry it). With one run per side, from
    the suite (`suite_between_runs`, over `fits` and the `untouched` reference cases, each with
    its variant in `groups`). From runs, `prior_df` says how far each case's own runs pull its
    variance away from the suite's prediction (`case_test`).
    """
    informative = [f for f in fits if f.runs_share > 0]
    from_runs = [f for f in informative if f.run_spread_df >= 1]
    if len(from_runs) >= max(MIN_SUITE_CASES, len(informative) / 2):
        spread = np.array([f.run_spread for f in from_runs])
        own = np.array([f.within / f.rounds_per_run for f in from_runs])
        df = np.array([f.run_spread_df for f in from_runs], float)
        variance = _median_matched(lambda v: spread / np.maximum(v + own, 1e-300), df)
        prior_df = _prior_df(spread / df / np.maximum(variance + own, 1e-300), df)
        return BetweenRuns(variance, float(MEDIAN_EFFICIENCY * df.sum()), "runs", len(from_runs),
                           prior_df)  # fmt: skip
    names = [str(i) for i in range(len(fits))] if groups is None else list(groups)
    return suite_between_runs(
        [*fits, *(f for f, _ in untouched)], [*names, *(g for _, g in untouched)]
    )


def suite_between_runs(fits: list[CaseFit], groups: list[str]) -> BetweenRuns:
    """One run per side: how far the cases' log ratios scatter around the suite's centre, as
    chi-square(1) x (its rounds' variance + between x 2), matched at the median.

    A change moves its variant's cases together, and a user who sweeps "my block against se
    and eca" changes half the cases, so each variant (`groups`: the case's variant, the
    references each their own) carries the same weight, shared among its cases: a variant
    that moved is one vote, as long as fewer than half the variants moved. Cases more than
    OUTLIER_Z standard deviations out are then set aside and the estimate repeated. With fewer
    than MIN_SUITE_CASES cases, or fewer than MIN_SUITE_VARIANTS variants, no estimate is
    left (source `none`): the compare cannot tell, rather than borrow a figure.
    """
    keep = [i for i, f in enumerate(fits) if f.runs_share > 0]
    informative = [fits[i] for i in keep]
    names = np.array([groups[i] for i in keep], dtype=object)
    variants = len(set(names.tolist()))
    if len(informative) < MIN_SUITE_CASES or variants < MIN_SUITE_VARIANTS:
        return BetweenRuns(cases=len(informative), variants=variants)
    _, group_index, group_sizes = np.unique(names, return_inverse=True, return_counts=True)
    weights = 1.0 / group_sizes[group_index]
    log_ratios = np.array([f.log_ratio for f in informative])
    own = np.array([f.within * f.rounds_share for f in informative])
    share = np.array([f.runs_share for f in informative])
    centre = _weighted_median(log_ratios, weights)
    variance = _suite_variance(log_ratios - centre, own, share, weights)
    effective = weights.sum() ** 2 / (weights**2).sum()  # Kish's: the cases the weights are worth
    return BetweenRuns(
        variance, float(MEDIAN_EFFICIENCY * effective), "suite", len(informative),
        variants=variants,
    )  # fmt: skip


def _suite_variance(
    offsets: np.ndarray, own: np.ndarray, share: np.ndarray, weights: np.ndarray
) -> float:
    """The between-run variance at which the cases' log ratios (less the suite's centre)
    scatter as chi-square(1) x (own + share x variance) at the weighted median; the cases
    more than OUTLIER_Z standard deviations out (those that changed) set aside, and again."""
    squared = offsets**2
    kept = np.ones(offsets.size, bool)
    variance = 0.0
    for _ in range(OUTLIER_PASSES):
        variance = _median_matched(
            lambda v, k=kept: squared[k] / np.maximum(own[k] + share[k] * v, 1e-300),
            np.ones(int(kept.sum())),
            weights[kept],
        )
        within_reach = squared / np.maximum(own + share * variance, 1e-300) < OUTLIER_Z**2
        if np.array_equal(within_reach, kept) or within_reach.sum() < MIN_SUITE_CASES:
            break
        kept = within_reach
    return variance


@dataclass
class RoundTest:
    """NEW / BASE of one case, with its interval, p-value and the smallest change it could
    have found."""

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    slope: float
    df: float
    detectable: float  # the slowdown factor found with POWER at `alpha`: exp((t_a + t_p) x se)


def case_test(
    fit: CaseFit, between: BetweenRuns, *, confidence: float = 0.95, alpha: float = 0.05
) -> RoundTest:
    """The case's t test with both shares of variance.

    From runs, a run mean's variance is moderated as limma moderates a gene's (an empirical-
    Bayes mean of the suite's prediction, between + within / rounds per run, worth `prior_df`
    degrees of freedom, and the case's own run spread, worth its runs - 2), with prior_df + runs
    - 2 degrees of freedom: a case whose processes scatter more than the suite's do gets the
    wider interval its own runs show. Otherwise (one run per side, or the suite's prediction
    alone) the rounds' and the runs' shares are summed, with Satterthwaite's degrees of
    freedom."""
    rounds_part = fit.within * fit.rounds_share
    runs_part = between.variance * fit.runs_share
    own_df = fit.run_spread_df
    if between.source == "runs" and own_df >= 1 and np.isfinite(between.prior_df):
        predicted = between.variance + fit.within / fit.rounds_per_run
        moderated = (between.prior_df * predicted + fit.run_spread) / (between.prior_df + own_df)
        slope_part = fit.within * (fit.rounds_share - fit.rounds_mean_share)
        variance = moderated * fit.runs_share + slope_part
        df = between.prior_df + own_df
    else:
        variance = rounds_part + runs_part
        if variance <= 0:
            df = float(fit.within_df)
        else:
            df = variance**2 / (rounds_part**2 / fit.within_df + runs_part**2 / between.df)
    se = float(np.sqrt(variance))
    d = fit.log_ratio
    p_value = float(2 * t_dist.sf(abs(d) / se, df)) if se > 0 else float(d == 0)
    half = float(t_dist.ppf(0.5 + confidence / 2, df)) * se
    reach = float(t_dist.ppf(1 - alpha / 2, df) + t_dist.ppf(POWER, df)) * se
    return RoundTest(float(np.exp(d)), float(np.exp(d - half)), float(np.exp(d + half)),
                     p_value, fit.slope, float(df), float(np.exp(reach)))  # fmt: skip


def ratio_from_rounds(
    base: Rounds,
    new: Rounds,
    *,
    slope: float | None = None,
    between: BetweenRuns | None = None,
    confidence: float = 0.95,
) -> RoundTest | None:
    """`fit_case` and `case_test` together, for one case on its own (between runs: none
    unless given)."""
    fit = fit_case(base, new, slope=slope)
    if fit is None:
        return None
    return case_test(fit, between or BetweenRuns(), confidence=confidence)
