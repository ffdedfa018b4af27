"""`python -m bench compare BASE NEW`: did NEW get slower (or hungrier) than BASE?

BASE and NEW are run directories (or directories of run directories, as `bench ab` writes), or
pytest-benchmark JSON files saved with ``--benchmark-save-data``. Cases are matched by key.

The model. A sweep times every case in rounds, one pass over the whole sweep per round, so a
case's rounds lie minutes apart and each saw its own state of the machine. The round, not the
sample, is the unit of evidence: samples inside a round share that state and are not
independent. Per case and side, each round (of each run) gives the log of its median time and
the log of its reference's median in the same round: by default the copy of the same tensor
timed right after each sample, or ``--reference NAME``'s median in that round. (pytest-benchmark
JSON without the suite's rounds counts each of its samples as a round.)

The log ratio NEW / BASE is estimated by a regression over the rounds of both sides: log time
on a side indicator and the log reference. The paired copy's slope is fitted within the sides
and held between 0 (raw time: the copy tells nothing about this case) and 1 (time divided by
the copy: it moves exactly with the machine), so raw time adds evidence where a copy in cache is
noise, and the copy takes out the machine's drift where it tracks it. A reference named with
``--reference`` is divided out as asked (slope 1); ``--absolute`` compares raw time (slope 0).
The estimate's t interval (degrees of freedom: rounds minus fitted terms) gives the 95%
interval of the ratio and a two-sided p-value.

The suite. Every gated case is a test, so the p-values are adjusted together (Benjamini-
Hochberg): the expected share of false findings among flagged cases is at most `alpha` (0.05),
and when nothing changed, the chance that any case is flagged is about `alpha`. A case is a
regression when its adjusted p-value is below `alpha` AND its ratio exceeds 1 + threshold
(10%): significant, and large enough to matter. An improvement likewise below 1 / (1 +
threshold). The suite's one figure is the geometric mean of the trusted cases' ratios with a
95% interval over cases. FLOPs, MACs, bytes, parameters and peak memory are exact, so any change
in them is reported.

A case needs two rounds on each side to be tested (`insufficient` otherwise). A case measured
while the machine was disturbed (flagged contended, contention_unchecked, gpu_throttled or
gpu_shared on either side) gets no pass and no regression: its verdict is `inconclusive`. The
sample flags (few_samples, unstable) do not: the spread between rounds already weighs them.

Exit codes: 0 no regression, 1 regression, 2 bad input, 3 inconclusive (no regression, but some
gated case was flagged).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control
from scipy.stats import t as t_dist

from ..measurement.quality import is_ok
from ..measurement.timing import geometric_mean_interval
from ..sweep.cases import SETTING_FIELDS, SHAPE_FIELDS
from ..sweep.results import RunDirectoryError, read_results, read_samples

EXACT_METRICS = ("flops", "macs", "bytes_moved", "peak_memory_bytes", "params")
GROUP_KEYS = (*SHAPE_FIELDS, *SETTING_FIELDS)  # a shape and setting: where references pair
TRUSTED = ("regression", "improvement", "unchanged")  # verdicts drawn from data that holds
# the machine, not the samples, was off: no statistic can correct for these
MACHINE_FLAGS = ("contended", "contention_unchecked", "gpu_throttled", "gpu_shared")
MIN_ROUNDS = 2  # per side: a spread between rounds needs two of them


class CompareInputError(ValueError):
    """BASE or NEW cannot be read, or they have nothing in common (exit code 2)."""


@dataclass
class Run:
    """One run's cases (a row each, indexed by case key) and their raw samples (seconds)."""

    cases: pd.DataFrame
    samples: dict[str, np.ndarray]
    source: str
    paired_references: dict[str, np.ndarray] = field(default_factory=dict)  # sample by sample
    rounds: dict[str, list[int]] = field(default_factory=dict)  # the round of each sample
    _reference_keys: dict[str, dict[tuple, str]] = field(default_factory=dict, repr=False)

    def reference_key(self, reference: str, group: tuple) -> str | None:
        """The key of `reference`'s case at a shape and setting, worked out once per run."""
        if reference not in self._reference_keys:
            refs = self.cases[self.cases["variant_label"] == reference]
            self._reference_keys[reference] = {
                _group(row): key for key, row in refs.iterrows() if len(self.samples.get(key, []))
            }
        return self._reference_keys[reference].get(group)


@dataclass
class Side:
    runs: list[Run]
    source: str

    @property
    def keys(self) -> list[str]:
        keys: dict[str, None] = {}
        for run in self.runs:
            keys.update(dict.fromkeys(run.cases.index))
        return list(keys)

    def case(self, key: str) -> pd.Series:
        for run in self.runs:
            if key in run.cases.index:
                return run.cases.loc[key]
        raise KeyError(key)

    def flags(self, key: str) -> list[str]:
        """The machine's quality flags the case carries in any of the side's runs."""
        flags: dict[str, None] = {}
        for run in self.runs:
            if key in run.cases.index:
                quality = run.cases.loc[key].get("quality", "ok")
                if not is_ok(quality):
                    flags.update(
                        dict.fromkeys(f for f in str(quality).split(";") if f in MACHINE_FLAGS)
                    )
        return list(flags)


# ---- reading ---------------------------------------------------------------------------------


def _group(row: pd.Series) -> tuple:
    return tuple(str(row.get(k, "")) for k in GROUP_KEYS)


def _run_from_directory(path: Path) -> Run:
    try:
        results = read_results(path)
        samples = read_samples(path)
    except (RunDirectoryError, pd.errors.ParserError, OSError) as error:
        raise CompareInputError(str(error)) from error
    ok = results[results["status"] == "ok"].copy()
    if ok.empty:
        raise CompareInputError(f"{path}: no case with status ok")
    ok["key"] = ok["case_id"].astype(str)
    ok["label"] = [_label(row) for _, row in ok.iterrows()]
    grouped = {k: g["seconds_per_call"].to_numpy(float) for k, g in samples.groupby("case_id")}
    rounds = {}
    if "round" in samples:
        rounds = {
            k: g["round"].fillna(0).astype(int).tolist() for k, g in samples.groupby("case_id")
        }  # samples written before rounds were recorded count as one stretch
    paired = {}
    if "reference_seconds_per_call" in samples:
        for k, g in samples.dropna(subset=["reference_seconds_per_call"]).groupby("case_id"):
            if len(g) == len(grouped[k]):
                paired[k] = g["reference_seconds_per_call"].to_numpy(float)
    return Run(
        ok.set_index("key"),
        {k: grouped.get(k, np.array([])) for k in ok["key"]},
        str(path),
        paired,
        rounds,
    )


def _label(row: pd.Series) -> str:
    what = (
        f"{row['model']}+{row['variant_label']}"
        if isinstance(row.get("model"), str) and row.get("model")
        else row["variant_label"]
    )
    fmt = "" if row.get("memory_format", "contiguous") == "contiguous" else " cl"
    compiled = " compiled" if str(row.get("compile", "")).lower() == "true" else ""
    return (
        f"{what} b{row['batch']} c{row['channels']} {row['height']}x{row['width']} "
        f"{row['dtype']} {row['device']} {row['mode']}{fmt}{compiled}"
    )


def _run_from_json(path: Path) -> Run:
    try:
        data = json.loads(path.read_text())
        benchmarks = data["benchmarks"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise CompareInputError(f"{path}: not a pytest-benchmark JSON file ({error})") from error
    rows, samples, paired, rounds = [], {}, {}, {}
    for bench in benchmarks:
        stats = bench.get("stats", {})
        info = bench.get("extra_info", {})
        key = bench.get("fullname") or bench["name"]
        if "samples_s" in info:
            # the suite's own measurement (bench.measurement.case): the same samples, paired
            # references and quality as a run directory
            samples[key] = np.asarray(info["samples_s"], dtype=float)
            rounds[key] = list(info.get("rounds") or [0] * len(info["samples_s"]))
            if info.get("reference_samples_s"):
                paired[key] = np.asarray(info["reference_samples_s"], dtype=float)
        elif "data" in stats:
            samples[key] = np.asarray(stats["data"], dtype=float)
            rounds[key] = list(range(len(stats["data"])))  # pytest-benchmark's own rounds
        else:
            raise CompareInputError(
                f"{path}: {bench.get('fullname')} has no raw samples; save the JSON with "
                "pytest --benchmark-json=FILE --benchmark-save-data"
            )
        row = {
            "key": key,
            "label": bench.get("name", key),
            "role": info.get("role", "variant"),
            "variant_label": info.get("variant", bench.get("name")),
        }
        row.update({k: info.get(k, "") for k in GROUP_KEYS})
        row.update({m: info.get(m) for m in EXACT_METRICS})
        row["quality"] = info.get("quality", "ok")
        rows.append(row)
    if not rows:
        raise CompareInputError(f"{path}: holds no benchmarks")
    return Run(pd.DataFrame(rows).set_index("key"), samples, str(path), paired, rounds)


def load_side(path: str | Path) -> Side:
    """A run directory, a directory of run directories, or a pytest-benchmark JSON file."""
    path = Path(path)
    if path.is_file():
        return Side([_run_from_json(path)], str(path))
    if not path.is_dir():
        raise CompareInputError(f"{path}: no such file or directory")
    if (path / "results.csv").exists():
        return Side([_run_from_directory(path)], str(path))
    runs = [_run_from_directory(d) for d in sorted(path.iterdir()) if (d / "results.csv").exists()]
    if not runs:
        raise CompareInputError(f"{path}: neither a run directory nor a directory of them")
    return Side(runs, str(path))


# ---- statistics ------------------------------------------------------------------------------


def _round_medians(values: np.ndarray, rounds: list[int]) -> dict[int, float]:
    frame = pd.DataFrame({"value": values, "round": rounds[: len(values)]})
    return frame.groupby("round")["value"].median().to_dict()


@dataclass
class Rounds:
    """A case's evidence on one side: per round of each run, the median time and the median of
    its reference in that round (None: raw times)."""

    times: np.ndarray
    references: np.ndarray | None
    samples: int

    @property
    def n(self) -> int:
        return self.times.size


def case_rounds(side: Side, key: str, reference: str | None) -> Rounds:
    """The case's per-round medians from every run of the side, each with its reference's:
    the paired copy where `reference` is copy and pairs exist, else the median of the
    `reference` case at the case's shape in the same round (its whole run's median if it lacks
    that round). A run that lacks the reference is bad input: normalised and raw times are
    never mixed."""
    times, references, samples = [], [], 0
    for run in side.runs:
        if key not in run.cases.index:
            continue
        values = run.samples.get(key, np.array([]))
        rounds = run.rounds.get(key) or [0] * values.size
        samples += values.size
        by_round = _round_medians(values, rounds)
        times += list(by_round.values())
        if reference is None:
            continue
        if reference == "copy" and key in run.paired_references:
            paired = _round_medians(run.paired_references[key], rounds)
            references += [paired[r] for r in by_round]
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
        anchor_rounds = _round_medians(
            anchor_values, run.rounds.get(anchor) or [0] * anchor_values.size
        )
        whole = float(np.median(anchor_values))
        references += [anchor_rounds.get(r, whole) for r in by_round]
    return Rounds(
        np.asarray(times, dtype=float),
        None if reference is None else np.asarray(references, dtype=float),
        samples,
    )


@dataclass
class RoundTest:
    """NEW / BASE of one case from its rounds (see the module docstring)."""

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    slope: float  # how far the reference was divided out: 0 raw time, 1 divided
    df: int


def ratio_from_rounds(
    base: Rounds, new: Rounds, *, slope: float | None = None, confidence: float = 0.95
) -> RoundTest | None:
    """The ratio NEW / BASE with its interval and p-value, from a regression of log time over
    the rounds of both sides on a side indicator and the log reference: with the reference's
    `slope` given (1: divide by it), or fitted within the sides and held in [0, 1] when None.
    None with fewer than `MIN_ROUNDS` rounds on a side."""
    if base.n < MIN_ROUNDS or new.n < MIN_ROUNDS:
        return None
    if np.any(base.times <= 0) or np.any(new.times <= 0):
        return None
    side = np.r_[np.zeros(base.n, bool), np.ones(new.n, bool)]
    y = np.log(np.r_[base.times, new.times])
    fitted = 2  # the two sides' means
    c = np.zeros_like(y)
    if base.references is None or new.references is None:
        slope = 0.0
    else:
        c = np.log(np.r_[base.references, new.references])
        dc = c - np.where(side, c[side].mean(), c[~side].mean())  # within the sides
        if slope is None:
            dy = y - np.where(side, y[side].mean(), y[~side].mean())
            scc = float(dc @ dc)
            slope = 1.0 if scc <= 0 else float(np.clip((dc @ dy) / scc, 0.0, 1.0))
            fitted += 0 < slope < 1  # a slope on the boundary was not fitted freely
    z = y - slope * c
    d = float(z[side].mean() - z[~side].mean())
    df = y.size - fitted
    if df < 1:
        return None
    residual = z - np.where(side, z[side].mean(), z[~side].mean())
    variance = float(residual @ residual) / df
    spread = 1 / base.n + 1 / new.n
    if fitted == 3:  # the fitted slope's own uncertainty, carried into the difference
        spread += (c[side].mean() - c[~side].mean()) ** 2 / float(dc @ dc)
    se = float(np.sqrt(variance * spread))
    p_value = float(2 * t_dist.sf(abs(d) / se, df)) if se > 0 else float(d == 0)
    half = float(t_dist.ppf(0.5 + confidence / 2, df)) * se
    return RoundTest(float(np.exp(d)), float(np.exp(d - half)), float(np.exp(d + half)),
                     p_value, slope, int(df))  # fmt: skip


@dataclass
class CaseComparison:
    key: str
    label: str
    verdict: str  # regression, improvement, unchanged, inconclusive, insufficient
    ratio: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    p_value: float = float("nan")
    base_median: float = float("nan")  # seconds per call, median over the rounds' medians
    new_median: float = float("nan")
    n_base: int = 0  # samples
    n_new: int = 0
    absolute_ratio: float = float("nan")  # new / base of raw times, rounds' medians
    reason: str = ""  # why a verdict is inconclusive or insufficient
    fields: dict[str, Any] = field(default_factory=dict)  # what identifies the case
    rounds_base: int = 0
    rounds_new: int = 0
    q_value: float = float("nan")  # p adjusted over the suite (Benjamini-Hochberg)
    slope: float = float("nan")
    df: int = 0


@dataclass
class Comparison:
    base: Side
    new: Side
    threshold: float
    alpha: float
    reference: str | None
    cases: list[CaseComparison] = field(default_factory=list)
    exact_changes: list[dict[str, Any]] = field(default_factory=list)
    only_base: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)
    drift: float = float("nan")  # new / base of the reference itself: the machine's drift

    @property
    def regressions(self) -> list[CaseComparison]:
        return [c for c in self.cases if c.verdict == "regression"]

    @property
    def improvements(self) -> list[CaseComparison]:
        return [c for c in self.cases if c.verdict == "improvement"]

    @property
    def inconclusive(self) -> list[CaseComparison]:
        return [c for c in self.cases if c.verdict == "inconclusive"]

    @property
    def geometric_mean(self) -> tuple[float, float, float, int]:
        """The suite in one figure: the geometric mean of the trusted cases' ratios, its 95%
        interval (a t-interval over the cases' log ratios) and how many cases it covers."""
        ratios = [c.ratio for c in self.cases
                  if c.verdict in TRUSTED and np.isfinite(c.ratio) and c.ratio > 0]  # fmt: skip
        if not ratios:
            return float("nan"), float("nan"), float("nan"), 0
        return (*geometric_mean_interval(ratios), len(ratios))

    @property
    def exit_code(self) -> int:
        """0 no regression, 1 regression, 3 no regression but some case inconclusive."""
        if self.regressions:
            return 1
        return 3 if self.inconclusive else 0


def compare(
    base_path: str | Path,
    new_path: str | Path,
    *,
    threshold: float = 0.10,
    alpha: float = 0.05,
    reference: str | None = "copy",
) -> Comparison:
    """Compare two sides case by case (see the module docstring)."""
    if not threshold > 0 or not 0 < alpha < 1:
        raise CompareInputError(
            f"threshold={threshold} and alpha={alpha}: allowed: threshold > 0, 0 < alpha < 1"
        )
    return compare_sides(
        load_side(base_path), load_side(new_path), threshold=threshold, alpha=alpha,
        reference=reference,
    )  # fmt: skip


def compare_sides(
    base: Side,
    new: Side,
    *,
    threshold: float = 0.10,
    alpha: float = 0.05,
    reference: str | None = "copy",
) -> Comparison:
    """`compare` on sides already loaded."""
    base_keys, new_keys = base.keys, new.keys
    common = [k for k in base_keys if k in set(new_keys)]
    if not common:
        raise CompareInputError(f"{base.source} and {new.source} have no case in common")
    result = Comparison(base, new, threshold, alpha, reference)
    result.only_base = [base.case(k)["label"] for k in base_keys if k not in set(new_keys)]
    result.only_new = [new.case(k)["label"] for k in new_keys if k not in set(base_keys)]
    drifts = []
    for key in common:
        row_base, row_new = base.case(key), new.case(key)
        _exact_changes(result, row_base, row_new)
        if row_base.get("role") == "reference":
            # references measure the machine, not the code: not gated, but they show its drift
            if row_base["variant_label"] == (reference or "copy"):
                b, n = case_rounds(base, key, None), case_rounds(new, key, None)
                if b.n and n.n:
                    drifts.append(np.median(n.times) / np.median(b.times))
            continue
        result.cases.append(_compare_case(base, new, key, row_base, reference))
    _decide(result.cases, threshold=threshold, alpha=alpha)
    if drifts:
        result.drift = float(np.median(drifts))
    return result


def _compare_case(
    base: Side, new: Side, key: str, row: pd.Series, reference: str | None
) -> CaseComparison:
    """The case's test, before the suite's decision (verdict `unchanged` until `_decide`)."""
    b, n = case_rounds(base, key, reference), case_rounds(new, key, reference)
    case = CaseComparison(
        key, row["label"], "unchanged",
        base_median=float(np.median(b.times)) if b.n else float("nan"),
        new_median=float(np.median(n.times)) if n.n else float("nan"),
        n_base=b.samples, n_new=n.samples,
        fields={f: _plain(row.get(f)) for f in ("variant_label", *GROUP_KEYS)},
        rounds_base=b.n, rounds_new=n.n,
    )  # fmt: skip
    if b.n and n.n:
        case.absolute_ratio = float(np.exp(np.log(n.times).mean() - np.log(b.times).mean()))
    # the paired copy weighs in as far as it tracks the case; a reference named is divided out
    tested = ratio_from_rounds(b, n, slope=None if reference == "copy" else 1.0)
    if tested is None:
        case.verdict = "insufficient"
        case.reason = f"{b.n} / {n.n} rounds; a test needs {MIN_ROUNDS} on each side"
        return case
    case.ratio, case.ci_low, case.ci_high = tested.ratio, tested.ci_low, tested.ci_high
    case.p_value, case.slope, case.df = tested.p_value, tested.slope, tested.df
    reason = _flag_reason(base.flags(key), new.flags(key))
    if reason:
        case.verdict, case.reason = "inconclusive", reason  # a disturbed machine: no verdict
    return case


def _decide(cases: list[CaseComparison], *, threshold: float, alpha: float) -> None:
    """The suite's decision: p-values adjusted together (Benjamini-Hochberg) over the gated
    cases; a regression is significant after adjustment and slower than 1 + threshold."""
    gated = [c for c in cases if c.verdict == "unchanged"]
    if not gated:
        return
    adjusted = false_discovery_control([c.p_value for c in gated], method="bh")
    for case, q in zip(gated, adjusted, strict=True):
        case.q_value = float(q)
        if q < alpha and case.ratio > 1 + threshold:
            case.verdict = "regression"
        elif q < alpha and case.ratio < 1 / (1 + threshold):
            case.verdict = "improvement"


def _plain(value: Any) -> Any:
    """A JSON-ready scalar from a pandas cell."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str) and value in ("True", "False"):
        return value == "True"
    return value


def to_json(result: Comparison) -> dict[str, Any]:
    """The machine-readable verdict (`compare --json FILE`)."""

    def number(value: float) -> float | None:
        return float(value) if np.isfinite(value) else None

    if result.regressions:
        verdict = "regression"
    elif result.inconclusive:
        verdict = "inconclusive"
    else:
        verdict = "no regression"
    cases = [
        {**c.fields, "label": c.label, "verdict": c.verdict, "ratio": number(c.ratio),
         "ci_low": number(c.ci_low), "ci_high": number(c.ci_high), "p_value": number(c.p_value),
         "p_adjusted": number(c.q_value), "reference_slope": number(c.slope), "df": c.df,
         "raw_ratio": number(c.absolute_ratio), "samples_base": c.n_base,
         "samples_new": c.n_new, "rounds_base": c.rounds_base, "rounds_new": c.rounds_new,
         "reason": c.reason}
        for c in result.cases
    ]  # fmt: skip
    mean, low, high, covered = result.geometric_mean
    geometric_mean = {
        "ratio": number(mean),
        "ci_low": number(low),
        "ci_high": number(high),
        "cases": covered,
    }
    return {
        "verdict": verdict,
        "exit_code": result.exit_code,
        "threshold": result.threshold,
        "alpha": result.alpha,
        "reference": result.reference,
        "machine_drift": number(result.drift),
        "geometric_mean": geometric_mean,
        "cases": cases,
        "exact_changes": [{k: _plain(v) for k, v in c.items()} for c in result.exact_changes],
        "only_base": result.only_base,
        "only_new": result.only_new,
    }


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


# ---- the report ------------------------------------------------------------------------------


def _case_table(cases: list[CaseComparison]) -> str:
    rows = [{
        "case": c.label,
        "base": _format_time(c.base_median),
        "new": _format_time(c.new_median),
        "new / base [95% CI]": f"{c.ratio:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]",
        "raw time new / base": _format_ratio(c.absolute_ratio),
        "reference slope": "-" if not np.isfinite(c.slope) else f"{c.slope:.2f}",
        "p / adjusted": f"{c.p_value:.2g} / {c.q_value:.2g}",
        "rounds": f"{c.rounds_base} / {c.rounds_new}",
    } for c in cases]  # fmt: skip
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def _format_time(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value * 1e6:.1f} us"


def _format_ratio(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.3f}"


def markdown(result: Comparison) -> str:
    gated = [c for c in result.cases if c.verdict in TRUSTED]
    how = (
        f"each case's rounds adjusted by the `{result.reference}` reference measured beside them"
        if result.reference
        else "raw times"
    )
    if result.regressions:
        verdict = f"**{len(result.regressions)} regression(s)**"
    elif result.inconclusive:
        verdict = f"**inconclusive** ({len(result.inconclusive)} case(s) measured on flagged data)"
    else:
        verdict = "**no regression**"
    lines = [
        "## Performance comparison",
        "",
        f"`{result.base.source}` -> `{result.new.source}`: {verdict} among {len(gated)} gated "
        f"cases ({how}; a regression is slower by more than {result.threshold:.0%}, with a "
        f"p-value below {result.alpha:g} once adjusted over the suite by Benjamini-Hochberg); "
        f"{len(result.improvements)} improvement(s).",
    ]
    mean, low, high, covered = result.geometric_mean
    if covered:
        interval = f" [95% CI {low:.3f}, {high:.3f}]" if covered > 1 else ""
        lines += [
            "",
            f"Suite: geometric mean of NEW / BASE over {covered} trusted cases: "
            f"**{mean:.3f}**{interval}.",
        ]
    if np.isfinite(result.drift):
        lines += [
            "",
            f"Machine drift: the `{result.reference}` reference itself ran "
            f"{result.drift:.2f}x as long in NEW as in BASE (median over shapes); "
            "normalisation takes this out.",
        ]
    for title, cases in (
        ("Regressions", result.regressions),
        ("Improvements", result.improvements),
    ):
        if cases:
            lines += ["", f"### {title}", "", _case_table(cases)]
    if result.inconclusive:
        lines += [
            "",
            "### Inconclusive: measured on data that cannot be trusted",
            "",
            "A flag means the machine, not the code, may have set these times (see the "
            "`quality` column): rerun on a quiet machine.",
            "",
            pd.DataFrame(
                [{"case": c.label, "why": c.reason, "new / base": _format_ratio(c.ratio)}
                 for c in result.inconclusive]
            ).to_markdown(index=False, disable_numparse=True),
        ]  # fmt: skip
    if result.exact_changes:
        lines += [
            "",
            "### Exact metrics that changed",
            "",
            pd.DataFrame(result.exact_changes).to_markdown(index=False),
        ]
    for title, labels in (
        ("Only in BASE (not compared)", result.only_base),
        ("Only in NEW (not compared)", result.only_new),
    ):
        if labels:
            lines += ["", f"### {title}", ""] + [f"- {label}" for label in labels]
    insufficient = [c for c in result.cases if c.verdict == "insufficient"]
    if insufficient:
        lines += ["", f"### Too few rounds to test (fewer than {MIN_ROUNDS} on a side)", ""]
        lines += [f"- {c.label} ({c.reason})" for c in insufficient]
    others = [c for c in result.cases if c.verdict == "unchanged"]
    if others:
        lines += [
            "",
            "<details><summary>All unchanged cases</summary>",
            "",
            _case_table(others),
            "",
            "</details>",
        ]
    return "\n".join(lines) + "\n"


def parse_threshold(text: str) -> float:
    """``10%`` or ``0.1`` -> 0.1."""
    text = str(text).strip()
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise CompareInputError(
            f"--threshold {text!r}: allowed: a percentage like 10% or a fraction like 0.1"
        ) from None
