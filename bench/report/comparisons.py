"""Tables that set cases of one run side by side, read from its samples: fused blocks against
their eager twins and a copy (`bench fused`), and networks against the plain one (`bench
network`). Both divide within a round (or within a sample pair), so the machine's drift cancels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..statistics import geometric_mean_interval
from ..sweep.rundir import quality_text
from .tables import FLAGGED_MARK

FUSED_SUFFIX = "_fused"


def _shape(row) -> str:
    return f"{row['batch']}x{row['channels']}x{row['height']}x{row['width']}"


def over_copy(samples: pd.DataFrame) -> pd.Series:
    """Per case: the median over its samples of time / the paired copy's time right after."""
    paired = samples.dropna(subset=["reference_seconds_per_call"])
    ratio = paired["seconds_per_call"] / paired["reference_seconds_per_call"]
    return ratio.groupby(paired["case_id"]).median()


def over_copy_interval(samples: pd.DataFrame) -> pd.DataFrame:
    """Per case: time / the paired copy as the geometric mean over its rounds of each round's
    median ratio, with a 95% t-interval over the rounds (NaN with one round: then the median
    over its samples, `over_copy`, and no interval)."""
    paired = samples.dropna(subset=["reference_seconds_per_call"]).copy()
    paired["ratio"] = paired["seconds_per_call"] / paired["reference_seconds_per_call"]
    if "round" not in paired:
        paired["round"] = 0
    per_round = paired.groupby(["case_id", "round"])["ratio"].median()
    records = {}
    for case_id, ratios in per_round.groupby(level="case_id"):
        records[case_id] = geometric_mean_interval(ratios.to_numpy())
    frame = pd.DataFrame.from_dict(records, orient="index", columns=["ratio", "low", "high"])
    single = frame["low"].isna()
    frame.loc[single, "ratio"] = over_copy(samples).reindex(frame.index[single])
    return frame


def _with_interval(ratio: float, low: float, high: float) -> str:
    return f"{ratio:.2f}" + (f" [{low:.2f}, {high:.2f}]" if np.isfinite(low) else "")


def fused_pairs(rows: pd.DataFrame) -> bool:
    """Whether a run holds a fused variant beside its eager twin (what `fused_table` needs)."""
    labels = set(rows["variant_label"])
    return any(f"{label}{FUSED_SUFFIX}" in labels for label in labels)


def fused_table(rows: pd.DataFrame, samples: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per shape, layout and block: eager and fused as multiples of a copy of the same tensor
    (the memory floor: one read, one write), fused / eager, and on CUDA the fused kernel's
    bandwidth as a share of the copy's (both move the tensor twice)."""
    ratios = over_copy_interval(samples)
    copy_s = samples.groupby("case_id")["reference_seconds_per_call"].median()
    rows = rows.assign(
        over_copy=rows["case_id"].map(ratios["ratio"]),
        over_copy_low=rows["case_id"].map(ratios["low"]),
        over_copy_high=rows["case_id"].map(ratios["high"]),
        copy_s=rows["case_id"].map(copy_s),
    )
    keys = ["batch", "channels", "height", "width", "memory_format", "mode", "compile"]
    records = []
    for key, group in rows.groupby(keys, sort=False):
        by_label = group.set_index("variant_label")
        for eager in sorted(set(by_label.index)):
            fused = f"{eager}{FUSED_SUFFIX}"
            if fused not in by_label.index:
                continue
            e, f = by_label.loc[eager], by_label.loc[fused]
            records.append({
                **dict(zip(keys, key, strict=True)), "shape": _shape(e), "block": eager,
                "copy_ms": f["copy_s"] * 1e3, "eager_over_copy": e["over_copy"],
                "eager_over_copy_ci_low": e["over_copy_low"],
                "eager_over_copy_ci_high": e["over_copy_high"],
                "fused_over_copy": f["over_copy"],
                "fused_over_copy_ci_low": f["over_copy_low"],
                "fused_over_copy_ci_high": f["over_copy_high"],
                "fused_over_eager": f["over_copy"] / e["over_copy"],
                "device": f["device"],
                "quality": quality_text([*e["quality_flags"], *f["quality_flags"]]),
            })  # fmt: skip
    raw = pd.DataFrame(records)
    if raw.empty:
        return raw, raw
    display = pd.DataFrame({
        "shape": raw["shape"], "layout": raw["memory_format"], "mode": raw["mode"],
        "compiled": raw["compile"].map({True: "yes", False: "no"}), "block": raw["block"],
        "copy (ms)": raw["copy_ms"].map(lambda v: f"{v:.3f}"),
        "eager / copy [95% CI]": [_with_interval(*v) for v in zip(
            raw["eager_over_copy"], raw["eager_over_copy_ci_low"],
            raw["eager_over_copy_ci_high"], strict=True)],
        "fused / copy [95% CI]": [_with_interval(*v) for v in zip(
            raw["fused_over_copy"], raw["fused_over_copy_ci_low"],
            raw["fused_over_copy_ci_high"], strict=True)],
        "fused / eager": raw["fused_over_eager"].map(lambda v: f"{v:.2f}"),
    })  # fmt: skip
    if raw["device"].astype(str).str.startswith("cuda").any():
        display["fused BW / copy BW"] = (100 / raw["fused_over_copy"]).map(lambda v: f"{v:.0f}%")
    display["quality"] = raw["quality"]
    return display, raw


def network_ratio_table(
    rows: pd.DataFrame, samples: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per mode and batch, one column per network: its time / the plain eager network's in the
    same round, the geometric mean over rounds [95% t-interval]; the plain network in ms."""
    per_round = samples.groupby(["case_id", "round"])["seconds_per_call"].median()
    # rows by mode and batch; columns plain first, the blocks in the sweep's order, compiled last
    rows = rows.assign(_block=rows["variant_label"] != "none").sort_values(
        ["mode", "batch", "compile", "_block"], kind="stable"
    )
    records = []
    for (mode, batch), group in rows.groupby(["mode", "batch"], sort=False):
        plain = group[(group["variant_label"] == "none") & ~group["compile"]]
        if plain.empty:
            continue
        base = per_round.loc[plain["case_id"].iloc[0]]
        for _, row in group.iterrows():
            times = per_round.loc[row["case_id"]]
            common = times.index.intersection(base.index)
            ratio, low, high = geometric_mean_interval((times[common] / base[common]).to_numpy())
            name = "plain" if row["variant_label"] == "none" else row["variant_label"]
            records.append({
                "mode": mode, "batch": batch,
                "network": name + (" compiled" if row["compile"] else ""),
                "median_s": float(times.median()), "ratio_to_plain": ratio, "ratio_ci_low": low,
                "ratio_ci_high": high, "rounds": len(common),
                "quality": quality_text(row["quality_flags"]),
            })  # fmt: skip
    raw = pd.DataFrame(records)
    lines = []
    for (mode, batch), group in raw.groupby(["mode", "batch"], sort=False) if len(raw) else []:
        line = {"mode": mode, "batch": batch}
        for _, row in group.iterrows():
            if row["network"] == "plain":
                line["plain"] = f"{row['median_s'] * 1e3:.1f} ms"
                continue
            interval = (
                f" [{row['ratio_ci_low']:.3f}, {row['ratio_ci_high']:.3f}]"
                if np.isfinite(row["ratio_ci_low"])
                else ""
            )
            flag = "" if row["quality"] == "ok" else f" {FLAGGED_MARK}"
            line[row["network"]] = f"{row['ratio_to_plain']:.3f}{interval}{flag}"
        lines.append(line)
    return pd.DataFrame(lines), raw
