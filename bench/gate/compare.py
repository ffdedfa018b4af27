"""`python -m bench compare BASE NEW`: did NEW get slower (or hungrier) than BASE?

BASE and NEW are run directories (or directories of run directories, as `bench ab` writes), or
pytest-benchmark JSON files saved with ``--benchmark-save-data``. Cases are matched by key.

Per case: the ratio of medians NEW / BASE with a bootstrap 95% confidence interval over the raw
samples, and a two-sided Mann-Whitney U test (as asv does). A regression is a slowdown beyond the
threshold AND significant at `alpha`; an improvement likewise. Time on a shared machine drifts by
tens of percent within an hour, so by default every sample is divided by the copy of the same
tensor timed right after it (or, without paired samples, by the run's copy reference): what is
compared is "times the memory floor", which drift moves far less. A copy of a tensor that sits
in cache is itself noisy, so a normalised verdict must also hold in raw time to count.
``--reference NAME`` divides by another reference's median instead, ``--absolute`` compares raw
seconds only; a side that cannot be divided as asked is bad input, never mixed with raw times.
FLOPs, MACs, bytes, parameters and peak memory are exact, so any change in them is reported.

A case whose `quality` is flagged on either side (contended, unstable, few samples, ...) gets no
pass and no regression: its verdict is `inconclusive`, with the flags as the reason.

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
from scipy.stats import mannwhitneyu
from scipy.stats import t as t_dist

from ..measurement.quality import is_ok
from ..sweep.cases import SETTING_FIELDS, SHAPE_FIELDS
from ..sweep.results import RunDirectoryError, read_results, read_samples

EXACT_METRICS = ("flops", "macs", "bytes_moved", "peak_memory_bytes", "params")
GROUP_KEYS = (*SHAPE_FIELDS, *SETTING_FIELDS)  # a shape and setting: where references pair
BOOTSTRAP_RESAMPLES = 2000
TRUSTED = ("regression", "improvement", "unchanged")  # verdicts drawn from data that holds


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
    _reference_medians: dict[str, dict[tuple, float]] = field(default_factory=dict, repr=False)

    def reference_medians(self, reference: str) -> dict[tuple, float]:
        """Median time of `reference` per shape and setting, worked out once per run."""
        if reference not in self._reference_medians:
            refs = self.cases[self.cases["variant_label"] == reference]
            self._reference_medians[reference] = {
                _group(row): float(np.median(self.samples[key]))
                for key, row in refs.iterrows()
                if len(self.samples.get(key, []))
            }
        return self._reference_medians[reference]


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
        """The quality flags the case carries in any of the side's runs."""
        flags: dict[str, None] = {}
        for run in self.runs:
            if key in run.cases.index:
                quality = run.cases.loc[key].get("quality", "ok")
                if not is_ok(quality):
                    flags.update(dict.fromkeys(str(quality).split(";")))
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


def case_samples(side: Side, key: str, reference: str | None) -> tuple[np.ndarray, bool]:
    """The case's samples from every run of the side, in one unit: divided by `reference`
    (the paired copy sample by sample where `reference` is copy and pairs exist, else the run's
    median of that reference at the case's shape), or raw seconds when `reference` is None.
    Returns (samples, normalised). A run that lacks the reference is bad input: normalised and
    raw times are never mixed."""
    parts = []
    for run in side.runs:
        if key not in run.cases.index:
            continue
        samples = run.samples.get(key, np.array([]))
        if reference is None:
            parts.append(samples)
        elif reference == "copy" and key in run.paired_references:
            # each sample over the copy timed right after it: the same moment of the machine
            parts.append(samples / run.paired_references[key])
        else:
            anchor = run.reference_medians(reference).get(_group(run.cases.loc[key]))
            if anchor is None:
                raise CompareInputError(
                    f"{run.source}: {run.cases.loc[key]['label']} has nothing to divide by: no "
                    f"`{reference}` reference at its shape and setting"
                    + (" and no paired copy samples" if reference == "copy" else "")
                    + "; both sides need it (rerun with references), or compare raw times "
                    "with --absolute"
                )
            parts.append(samples / anchor)
    return (np.concatenate(parts) if parts else np.array([])), reference is not None


def rounds_of(side: Side, key: str) -> int:
    """Independent stretches of time behind a case: each run's rounds (one if not recorded)."""
    return sum(len(set(run.rounds.get(key, [0]))) for run in side.runs if key in run.cases.index)


def bootstrap_ratio_ci(
    base: np.ndarray,
    new: np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of median(new) / median(base)."""
    rng = np.random.default_rng(seed)
    b = np.median(rng.choice(base, size=(resamples, base.size)), axis=1)
    n = np.median(rng.choice(new, size=(resamples, new.size)), axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(n / b, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class CaseComparison:
    key: str
    label: str
    verdict: str  # regression, improvement, unchanged, inconclusive, insufficient
    ratio: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    p_value: float = float("nan")
    base_median: float = float("nan")
    new_median: float = float("nan")
    normalised: bool = False
    n_base: int = 0
    n_new: int = 0
    absolute_ratio: float = float("nan")  # new / base of raw times, when `ratio` is normalised
    reason: str = ""  # why a verdict is inconclusive
    fields: dict[str, Any] = field(default_factory=dict)  # what identifies the case
    rounds_base: int = 0
    rounds_new: int = 0


def compare_samples(
    base: np.ndarray, new: np.ndarray, *, threshold: float, alpha: float
) -> tuple[str, float, float, float, float]:
    """(verdict, ratio, ci_low, ci_high, p) for two sample sets."""
    if base.size < 3 or new.size < 3:
        return "insufficient", float("nan"), float("nan"), float("nan"), float("nan")
    ratio = float(np.median(new) / np.median(base))
    low, high = bootstrap_ratio_ci(base, new)
    p_value = float(mannwhitneyu(new, base, alternative="two-sided").pvalue)
    significant = p_value < alpha
    if significant and ratio > 1 + threshold:
        verdict = "regression"
    elif significant and ratio < 1 / (1 + threshold):
        verdict = "improvement"
    else:
        verdict = "unchanged"
    return verdict, ratio, low, high, p_value


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
        logs = np.log([c.ratio for c in self.cases
                       if c.verdict in TRUSTED and np.isfinite(c.ratio) and c.ratio > 0])  # fmt: skip
        if logs.size == 0:
            return float("nan"), float("nan"), float("nan"), 0
        mean = float(logs.mean())
        if logs.size < 2:
            return float(np.exp(mean)), float("nan"), float("nan"), 1
        half = float(t_dist.ppf(0.975, logs.size - 1) * logs.std(ddof=1) / np.sqrt(logs.size))
        return (
            float(np.exp(mean)),
            float(np.exp(mean - half)),
            float(np.exp(mean + half)),
            logs.size,
        )

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
    alpha: float = 0.01,
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
    alpha: float = 0.01,
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
                b, _ = case_samples(base, key, None)
                n, _ = case_samples(new, key, None)
                if b.size and n.size:
                    drifts.append(np.median(n) / np.median(b))
            continue
        b, b_norm = case_samples(base, key, reference)
        n, n_norm = case_samples(new, key, reference)
        verdict, ratio, low, high, p = compare_samples(b, n, threshold=threshold, alpha=alpha)
        absolute_ratio = float("nan")
        if b_norm and n_norm:
            # the reference is noisy where the tensor sits in cache: a verdict must hold in raw
            # time too, so neither the reference's noise nor the machine's drift alone can flag
            raw_b, _ = case_samples(base, key, None)
            raw_n, _ = case_samples(new, key, None)
            raw_verdict, absolute_ratio, *_ = compare_samples(
                raw_b, raw_n, threshold=threshold, alpha=alpha
            )
            if raw_verdict != verdict and verdict in ("regression", "improvement"):
                verdict = "unchanged"
        reason = _flag_reason(base.flags(key), new.flags(key))
        if reason and verdict != "insufficient":
            verdict = "inconclusive"  # flagged data can neither pass nor fail a case
        result.cases.append(CaseComparison(
            key, row_base["label"], verdict, ratio, low, high, p,
            float(np.median(b)) if b.size else float("nan"),
            float(np.median(n)) if n.size else float("nan"),
            b_norm and n_norm, b.size, n.size, absolute_ratio, reason,
            {f: _plain(row_base.get(f)) for f in ("variant_label", *GROUP_KEYS)},
            rounds_of(base, key), rounds_of(new, key),
        ))  # fmt: skip
    if drifts:
        result.drift = float(np.median(drifts))
    return result


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
         "normalised": c.normalised, "raw_ratio": number(c.absolute_ratio),
         "samples_base": c.n_base, "samples_new": c.n_new, "rounds_base": c.rounds_base,
         "rounds_new": c.rounds_new, "reason": c.reason}
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
        "base": _format_time(c.base_median, c.normalised),
        "new": _format_time(c.new_median, c.normalised),
        "new / base [95% CI]": f"{c.ratio:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]",
        "raw time new / base": "-" if not np.isfinite(c.absolute_ratio) else f"{c.absolute_ratio:.3f}",
        "p (Mann-Whitney)": f"{c.p_value:.2g}",
        "samples": f"{c.n_base} / {c.n_new}",
    } for c in cases]  # fmt: skip
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def _format_time(value: float, normalised: bool) -> str:
    if not np.isfinite(value):
        return "-"
    return f"{value:.3f}x copy" if normalised else f"{value * 1e6:.1f} us"


def markdown(result: Comparison) -> str:
    gated = [c for c in result.cases if c.verdict != "insufficient"]
    how = (
        f"each case divided by the `{result.reference}` reference measured beside it"
        if result.reference
        else "absolute times"
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
        f"`{result.base.source}` -> `{result.new.source}`: {verdict} among {len(gated)} cases "
        f"({how}; a regression is slower by more than {result.threshold:.0%} with "
        f"p < {result.alpha:g}); {len(result.improvements)} improvement(s).",
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
                [{"case": c.label, "why": c.reason, "new / base": f"{c.ratio:.3f}"}
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
    insufficient = [c.label for c in result.cases if c.verdict == "insufficient"]
    if insufficient:
        lines += ["", "### Too few samples to test (fewer than 3 on a side)", ""]
        lines += [f"- {label}" for label in insufficient]
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
