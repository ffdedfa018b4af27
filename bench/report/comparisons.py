"""Tables that set cases of one run side by side, read from its samples: fused blocks against
their eager twins and a copy (`bench fused`), and networks against the plain one (`bench
network`). Both divide within a round (or within a sample pair), so the machine's drift cancels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..statistics import geometric_mean_interval
from ..sweep.cases import case_label
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


def fused_table(
    rows: pd.DataFrame, samples: pd.DataFrame, traffic: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per shape, layout and block: eager and fused as multiples of a copy of the same tensor
    (the memory floor: one read, one write), fused / eager, and on CUDA the fused kernel's
    bandwidth as a share of the copy's (both move the tensor twice). With `traffic` (a run's
    kernel_traffic.csv), the fused block's counter bytes beside its Triton kernels' counted
    bytes."""
    ratios = over_copy_interval(samples)
    copy_s = samples.groupby("case_id")["reference_seconds_per_call"].median()
    rows = rows.assign(
        over_copy=rows["case_id"].map(ratios["ratio"]),
        over_copy_low=rows["case_id"].map(ratios["low"]),
        over_copy_high=rows["case_id"].map(ratios["high"]),
        copy_s=rows["case_id"].map(copy_s),
    )
    keys = ["batch", "channels", "height", "width", "memory_format", "mode", "compile", "launch"]
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
                "fused_counter_bytes": f["bytes_moved"],
                **_counted(traffic, f["case_id"]),
                "device": f["device"],
                "quality": quality_text([*e["quality_flags"], *f["quality_flags"]]),
            })  # fmt: skip
    raw = pd.DataFrame(records)
    if raw.empty:
        return raw, raw
    display = pd.DataFrame({
        "shape": raw["shape"], "layout": raw["memory_format"], "mode": raw["mode"],
        "compiled": raw["compile"].map({True: "yes", False: "no"}), "launch": raw["launch"],
        "block": raw["block"],
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
    if traffic is not None:
        display["fused bytes: counter"] = _bytes_and_passes(
            raw["fused_counter_bytes"], raw["feature_map_bytes"]
        )
        display["fused bytes: kernels counted"] = _bytes_and_passes(
            raw["kernel_bytes"], raw["feature_map_bytes"]
        )
    display["quality"] = raw["quality"]
    if (raw["launch"] == "eager").all():
        display = display.drop(columns="launch")  # one launch: the column says nothing
    return display, raw


def _counted(traffic: pd.DataFrame | None, case_id: str) -> dict[str, float]:
    """The case's counted kernel bytes and the bytes of one pass over x (NaN: not counted)."""
    found = None if traffic is None else traffic[traffic["case_id"] == case_id]
    if found is None or found.empty:
        return {"kernel_bytes": np.nan, "feature_map_bytes": np.nan}
    first = found.iloc[0]
    return {
        "kernel_bytes": float(first["loaded_bytes"] + first["stored_bytes"]),
        "feature_map_bytes": float(first["feature_map_bytes"]),
    }


def _bytes_and_passes(moved: pd.Series, one_pass: pd.Series) -> list[str]:
    return [
        "-" if not np.isfinite(m) else f"{m / 1e6:.2f} MB" + (
            f" ({m / p:.2f} x)" if np.isfinite(p) and p > 0 else ""
        )
        for m, p in zip(moved.astype(float), one_pass.astype(float), strict=True)
    ]  # fmt: skip


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
    for (mode, batch, launch), group in rows.groupby(["mode", "batch", "launch"], sort=False):
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
                "mode": mode, "batch": batch, "launch": launch,
                "network": name + (" compiled" if row["compile"] else ""),
                "median_s": float(times.median()), "ratio_to_plain": ratio, "ratio_ci_low": low,
                "ratio_ci_high": high, "rounds": len(common),
                "quality": quality_text(row["quality_flags"]),
            })  # fmt: skip
    raw = pd.DataFrame(records)
    lines = []
    keys = ["mode", "batch", "launch"]
    for (mode, batch, launch), group in raw.groupby(keys, sort=False) if len(raw) else []:
        line = {"mode": mode, "batch": batch, "launch": launch}
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
    table = pd.DataFrame(lines)
    if len(table) and (table["launch"] == "eager").all():
        table = table.drop(columns="launch")  # one launch: the column says nothing
    return table, raw


def launch_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per case launched both ways: its eager time (device time plus launching from Python),
    its CUDA-graph replay (device time alone, L2 cold) and the difference, the launch cost."""
    # each case by its eager label: the same for both launches of one case
    rows = rows.assign(case=[case_label({**r, "launch": "eager"}) for r in rows.to_dict("records")])
    eager = rows[rows["launch"] == "eager"].set_index("case")
    graph = rows[rows["launch"] == "graph"].set_index("case")
    both = eager.index.intersection(graph.index)
    raw = pd.DataFrame({
        "case": both,
        "eager_s": eager.loc[both, "latency_median_s"].to_numpy(float),
        "graph_s": graph.loc[both, "latency_median_s"].to_numpy(float),
        "graph_rotated_bytes": graph.loc[both, "graph_rotated_bytes"].to_numpy(float),
        "l2_bytes": graph.loc[both, "l2_bytes"].to_numpy(float),
        "quality": [quality_text([*e, *g]) for e, g in zip(
            eager.loc[both, "quality_flags"], graph.loc[both, "quality_flags"], strict=True)],
    })  # fmt: skip
    raw["launch_s"] = raw["eager_s"] - raw["graph_s"]
    display = pd.DataFrame({
        "case": raw["case"],
        "eager (us)": raw["eager_s"].map(lambda v: f"{v * 1e6:.1f}"),
        "graph replay (us)": raw["graph_s"].map(lambda v: f"{v * 1e6:.1f}"),
        "launch cost (us)": raw["launch_s"].map(lambda v: f"{v * 1e6:.1f}"),
        "launch share": (raw["launch_s"] / raw["eager_s"]).map(lambda v: f"{v:.0%}"),
        "rotated / L2": (raw["graph_rotated_bytes"] / raw["l2_bytes"]).map(
            lambda v: f"{v:.1f}"
        ),
        "quality": raw["quality"],
    })  # fmt: skip
    return display, raw
