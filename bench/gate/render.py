"""The compare's verdict written out: the PR-comment Markdown and the JSON."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .compare import CHECK_WHY, MIN_ROUNDS, VERDICTS, CaseComparison, Comparison, plain_value
from .counted import CountedBasis


def to_json(result: Comparison) -> dict[str, Any]:
    """The machine-readable verdict (`compare --json FILE`): each case's fields under the
    names `CaseComparison` gives them, with what identifies the case beside."""
    cases = []
    for case in result.cases:
        record = {k: _number(v) for k, v in asdict(case).items() if k not in ("key", "fields")}
        cases.append({**case.fields, **record})
    mean, low, high, covered = result.geometric_mean
    return {
        "verdict": result.verdict,
        "exit_code": result.exit_code,
        "strict": result.strict,
        "threshold": result.threshold,
        "alpha": result.alpha,
        "reference": result.reference,
        "check": result.check or None,
        "machine_drift": _number(result.drift),
        "verdicts": {v: len(result.with_verdict(v)) for v in VERDICTS},
        "between_runs": {**asdict(result.between_runs), "df": _number(result.between_runs.df),
                         "relative_sd": result.between_runs.relative_sd},
        "counted": None if result.counted is None else {
            **asdict(result.counted),
            "between_processes": _number(result.counted.between_processes)},
        "geometric_mean": {"ratio": _number(mean), "ci_low": _number(low),
                           "ci_high": _number(high), "cases": covered},
        "cases": cases,
        "exact_changes": [{k: plain_value(v) for k, v in c.items()} for c in result.exact_changes],
        "provenance": {"base": result.base.provenance, "new": result.new.provenance},
        "only_base": result.only_base,
        "only_new": result.only_new,
    }  # fmt: skip


def _number(value: Any) -> Any:
    """NaN as null (JSON has no NaN); anything else as it is."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _case_table(
    cases: list[CaseComparison], result: Comparison, *, detectable: bool = False
) -> str:
    """One row per case; each column says what it holds: the raw medians and their ratio,
    and the ratio the gate tests (over the reference, where one is divided out); or, for
    simulated sides, the counts and their ratio with its interval."""
    if result.counted is not None:
        return _counted_table(cases, result.counted.metric)
    reference = result.reference
    tested = "new / base" if reference is None else f"new / base over its {reference}"
    rows = [{
        "case": c.label,
        "base (raw median)": _format_time(c.base_median),
        "new (raw median)": _format_time(c.new_median),
        "raw new / base": _format_ratio(c.raw_ratio),
        f"{tested} [95% CI]": f"{c.ratio:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]",
        "reference slope": "-" if not np.isfinite(c.reference_slope) else f"{c.reference_slope:.2f}",
        "p / adjusted": f"{c.p_value:.2g} / {c.p_adjusted:.2g}",
        "rounds": f"{c.rounds_base} / {c.rounds_new}",
        **({"smallest slowdown it could find": _format_change(c.detectable_ratio)}
           if detectable else {}),
        **({"why": c.reason or "-"} if any(x.reason for x in cases) else {}),
    } for c in cases]  # fmt: skip
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def _counted_table(cases: list[CaseComparison], metric: str) -> str:
    rows = [{
        "case": c.label,
        f"base {metric}": f"{c.base_median:,.0f}",
        f"new {metric}": f"{c.new_median:,.0f}",
        "new / base [+-noise]": f"{c.ratio:.4f} [{c.ci_low:.4f}, {c.ci_high:.4f}]",
        **({"why": c.reason or "-"} if any(x.reason for x in cases) else {}),
    } for c in cases]  # fmt: skip
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def _format_change(ratio: float) -> str:
    return "-" if not np.isfinite(ratio) else f"+{ratio - 1:.0%}"


def _format_time(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value * 1e6:.1f} us"


def _format_ratio(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.3f}"


def markdown(result: Comparison, preface: list[str] = ()) -> str:
    """The PR-comment report (`compare --output FILE`, and what `bench compare` prints);
    `preface` lines (which revisions were compared, say) come right under its title."""
    tested = result.tested
    counted = result.counted
    how = (
        f"each case's `{counted.metric}` counted under valgrind, one run per side"
        if counted is not None
        else f"each case's rounds adjusted by the `{result.reference}` reference measured "
        "beside them"
        if result.reference
        else "raw times"
    )
    interval, more_data = (
        ("interval of +-noise", "the noise is wider than the change")
        if counted is not None
        else ("95% interval", "more rounds or runs would tell")
    )
    rule = (
        f"a regression has {result.threshold:.0%} more than BASE and its whole interval above 1"
        if counted is not None
        else f"a regression is slower by more than {result.threshold:.0%}, with a p-value "
        f"below {result.alpha:g} once adjusted over the suite by Benjamini-Hochberg"
    )
    low, high = 1 / (1 + result.threshold), 1 + result.threshold
    cannot_tell = result.cannot_tell
    verdict = {
        "regression": f"**{len(result.regressions)} regression(s)**"
        if result.regressions
        else "**regression**: the suite as a whole is slower",
        "cannot tell": f"**cannot tell** ({len(cannot_tell)} case(s) that may be slower by "
        f"more than {result.threshold:.0%}: the data can neither show it nor rule it out)",
        "inconclusive": f"**inconclusive** ({len(result.inconclusive)} case(s) measured on "
        "flagged data)",
        "undetermined": f"**undetermined** ({len(result.undetermined)} case(s) the data cannot "
        "tell; --strict)",
        "no regression": "**no regression**",
    }[result.verdict]
    between = result.between_runs
    source = {
        "runs": "estimated from each side's runs",
        "suite": "estimated from the spread of the suite's cases: one run per side; each of "
        f"{between.variants} variants and references weighs the same, so a variant that moved "
        "as a whole cannot widen it",
        "none": f"not estimated: {between.cases} case(s), too few to tell",
    }[between.source]
    lines = [
        "## Performance comparison",
        "",
        *(line for entry in preface for line in (entry, "")),
        f"`{result.base.source}` -> `{result.new.source}`: {verdict} among {len(tested)} tested "
        f"cases ({how}; {rule}).",
        "",
        f"**{len(result.with_verdict('unchanged'))} of {len(tested)} cases shown unchanged** "
        f"({interval} inside [{low:.3f}, {high:.3f}]); "
        f"{len(result.undetermined)} undetermined (the interval reaches past a bound: "
        f"{more_data}); {len(result.regressions)} regression(s), "
        f"{len(result.improvements)} improvement(s).",
        "",
        f"Between processes: a run's mean varies by {between.relative_sd:.1%} (one standard "
        f"deviation, {source}); every interval includes it.",
    ]
    if counted is not None:
        lines[-1] = _counted_noise_line(counted)
    elif tested and min(min(c.runs_base, c.runs_new) for c in tested) < 2:
        lines[-1] += (
            " One run on a side is weaker evidence than two: how much processes differ is "
            "then read from the suite, not measured (`bench ab --runs 2` runs two per side)."
        )
    held = [c for c in result.undetermined if c.reason]
    if held and counted is None and result.check:
        lines[-1] += (
            f" {len(held)} case(s) past the threshold against their reference stay "
            f"undetermined: their {result.check} did not move significantly, so "
            f"{CHECK_WHY[result.check]} (listed with the undetermined cases)."
        )
    for name, side in (("BASE", result.base), ("NEW", result.new)):
        if side.provenance:
            lines += ["", f"{name} measured: " + "; ".join(side.provenance) + "."]
    mean, mean_low, mean_high, covered = result.geometric_mean
    if covered:
        interval = f" [95% CI {mean_low:.3f}, {mean_high:.3f}]" if covered > 1 else ""
        finding = {
            "regression": f" The whole interval lies above {high:.3f}: the suite as a whole "
            f"is slower by more than {result.threshold:.0%}, a regression.",
            "improvement": f" The whole interval lies below {low:.3f}: the suite as a whole "
            f"is faster by more than {result.threshold:.0%}.",
        }.get(result.suite_finding, "")
        lines += [
            "",
            f"Suite: geometric mean of NEW / BASE over {covered} tested cases: "
            f"**{mean:.3f}**{interval}.{finding}",
        ]
    if cannot_tell:
        why = (
            "with one run per side, too few untouched cases were left to say how much "
            "processes differ"
            if result.spread_unknown
            else f"each estimate lies past {high:.3f} but its interval reaches back inside"
        )
        more = (
            "Sweeping with the references (conv3x3, copy) would tell."
            if counted is not None
            else "More rounds (`--rounds`) or runs per side (`bench ab --runs 2`) would tell."
        )
        lines += [
            "",
            "### Cannot tell: cases that may have regressed",
            "",
            f"The data can neither show these slower nor rule it out ({why}). {more}",
            "",
            _case_table(cannot_tell, result, detectable=True),
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
            lines += ["", f"### {title}", "", _case_table(cases, result)]
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
    folded = (
        ("Undetermined cases within the threshold (not shown unchanged either)",
         [c for c in result.undetermined if c not in cannot_tell], True),
        ("All unchanged cases", result.with_verdict("unchanged"), False),
    )  # fmt: skip
    for title, cases, detectable in folded:
        if cases:
            lines += ["", f"<details><summary>{title}: {len(cases)}</summary>", "",
                      _case_table(cases, result, detectable=detectable), "",
                      "</details>"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _counted_noise_line(counted: CountedBasis) -> str:
    return (
        f"Between processes: the conv3x3 and copy references' `{counted.metric}` moved by at "
        f"most {counted.between_processes:.2%} ({counted.references} references, which no "
        "change under test reaches); each case's interval is +- the larger of that and its own "
        "counted calls' spreads on the two sides added."
    )


# GitHub refuses a job's step summary past 1 MiB; the cut leaves room for other steps' lines
STEP_SUMMARY_BYTES = 1024 * 1024 - 16 * 1024


def append_step_summary(text: str, whole: str = "") -> Path | None:
    """Append `text` to `$GITHUB_STEP_SUMMARY` (GitHub Actions' job summary) when it is set,
    cut to stay under GitHub's size cap with a line saying so (and where `whole` is, when
    given); the file written, or None outside Actions."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    room = STEP_SUMMARY_BYTES - (path.stat().st_size if path.exists() else 0)
    data = text.encode()
    if len(data) > room:
        note = "\n\n(cut here: GitHub's step summary holds at most 1 MiB"
        note += f"; the whole report is {whole})\n" if whole else ")\n"
        keep = max(room - len(note.encode()), 0)
        text = data[:keep].decode(errors="ignore") + note
    with path.open("a") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")
    return path
