"""Tables for papers and READMEs, from a run's results (pandas): Markdown, LaTeX and CSV.

CSV files keep full-precision numbers for further work; Markdown and LaTeX show what the
measurement supports: a latency is rounded to the decimal place of its 95% confidence interval's
half-width, so a 2% interval never prints seven digits.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..sweep.cases import SETTING_FIELDS, SHAPE_FIELDS
from ..sweep.rundir import REFERENCE_NAMES

SHAPE = list(SHAPE_FIELDS)
# the setting's fields, device first: file names read cpu_float32_infer
SETTING = ["device", *(f for f in SETTING_FIELDS if f != "device")]
REFERENCE_ORDER = list(REFERENCE_NAMES)


def decimals_for(half_width: float) -> int:
    """Decimal places that keep the first significant digit of the uncertainty."""
    if not np.isfinite(half_width) or half_width <= 0:
        return 3
    return max(0, -math.floor(math.log10(half_width)))


def format_measured(value: float, half_width: float, max_decimals: int = 4) -> str:
    """`value` rounded where its uncertainty `half_width` makes further digits noise."""
    if not np.isfinite(value):
        return "-"
    places = min(decimals_for(half_width), max_decimals)
    return f"{value:.{places}f}"


def format_exact(value: float, significant: int = 4) -> str:
    """An exact count shown to `significant` figures (a presentation choice, not noise)."""
    if not np.isfinite(value):
        return "-"
    if value == 0:
        return "0"
    places = max(0, significant - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{places}f}"


def latency_unit(seconds: pd.Series) -> tuple[float, str]:
    """Scale and unit name so that the typical value reads well."""
    typical = float(seconds.median()) if len(seconds) else 0.0
    if typical >= 0.1:
        return 1.0, "s"
    if typical >= 1e-4:
        return 1e3, "ms"
    return 1e6, "µs"


def _resolution(frame: pd.DataFrame) -> pd.Series:
    return frame["height"].astype(str) + "x" + frame["width"].astype(str)


def _variant_order(labels) -> list[str]:
    labels = list(dict.fromkeys(labels))
    refs = [r for r in REFERENCE_ORDER if r in labels]
    return refs + sorted(label for label in labels if label not in refs)


def ok_rows(
    results: pd.DataFrame, role: str | tuple[str, ...] = ("variant", "reference")
) -> pd.DataFrame:
    roles = (role,) if isinstance(role, str) else role
    rows = results[(results["status"] == "ok") & results["role"].isin(roles)].copy()
    rows["resolution"] = _resolution(rows)
    rows["pixels"] = rows["height"] * rows["width"]
    return rows


def groups(rows: pd.DataFrame, keys: list[str]):
    """(name, frame) per combination of `keys`, named like ``cpu_float32_infer``."""
    if rows.empty:
        return
    for values, frame in rows.groupby(keys, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        parts = []
        for key, value in zip(keys, values, strict=True):
            if (key, value) in (("memory_format", "contiguous"), ("launch", "eager")):
                continue  # the defaults: names as before these settings existed
            if key == "compile":
                if value in (True, "True"):
                    parts.append("compiled")
                continue
            if key == "machine":  # a free-form label: keep what a file name can hold
                value = re.sub(r"[^A-Za-z0-9.]+", "-", str(value)).strip("-")
            parts.append(f"b{value}" if key == "batch" else str(value))
        yield "_".join(parts).replace(":", ""), frame


# ---- the tables ------------------------------------------------------------------------------


FLAGGED_MARK = "†"  # a cell whose row's quality is not ok


def latency_table(
    rows: pd.DataFrame, unit: tuple[float, str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Median [IQR] by (batch, channels, variant) x resolution, a † on flagged measurements,
    in `unit` (scale, name; default: what suits these rows); returns (display, raw, unit)."""
    scale, unit = unit or latency_unit(rows["latency_median_s"])
    rows = rows.assign(
        cell=[
            f"{format_measured(m * scale, (hi - lo) / 2 * scale)} "
            f"[{format_measured(iqr * scale, (hi - lo) / 2 * scale)}]"
            + (f" {FLAGGED_MARK}" if flags else "")
            for m, iqr, lo, hi, flags in zip(
                rows.latency_median_s,
                rows.latency_iqr_s,
                rows.latency_ci_low_s,
                rows.latency_ci_high_s,
                rows["quality_flags"],
                strict=True,
            )
        ]
    )
    order = _variant_order(rows["variant_label"])
    resolutions = rows.sort_values("pixels")["resolution"].unique()
    index_keys = ["batch", "channels", "variant_label"]  # every swept dimension stays
    display = rows.pivot_table(
        index=index_keys, columns="resolution", values="cell", aggfunc="first"
    )
    raw = rows.pivot_table(
        index=index_keys,
        columns="resolution",
        values="latency_median_s",
        aggfunc="first",
    )
    index = sorted(display.index, key=lambda ix: (ix[0], ix[1], order.index(ix[2])))
    display = display.reindex(index=index, columns=resolutions)
    raw = raw.reindex(index=index, columns=resolutions)
    display.index.names = raw.index.names = ["B", "C", "variant"]
    display.columns.name = raw.columns.name = "H x W"
    return display, raw, unit


def overhead_table(
    rows: pd.DataFrame, unit: tuple[float, str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each variant against the references measured beside it at the same shape and setting:
    every figure with its 95% interval (± its half-width), and a † where the variant or a
    reference beside it was flagged in `quality`."""
    keys = SHAPE + SETTING
    variants = rows[rows["role"] == "variant"]
    raw = variants[keys].assign(
        variant=variants["variant_label"],
        latency_s=variants["latency_median_s"],
        latency_rel_ci=_relative_half_width(variants),
        flagged=variants["quality_flags"].map(bool),
    )
    for name in REFERENCE_ORDER:
        ref = rows[rows["variant_label"] == name]
        ref = ref[keys].assign(
            **{f"{name}_s": ref["latency_median_s"], f"{name}_rel_ci": _relative_half_width(ref),
               f"{name}_flagged": ref["quality_flags"].map(bool)}
        )  # fmt: skip
        raw = raw.merge(ref, on=keys, how="left")
        raw["flagged"] |= raw.pop(f"{name}_flagged").fillna(False).astype(bool)
    raw["added_vs_identity_s"] = raw["latency_s"] - raw["identity_s"]
    # the difference's half-width: the two medians' half-widths in quadrature
    raw["added_vs_identity_ci_s"] = np.hypot(
        raw["latency_s"] * raw["latency_rel_ci"], raw["identity_s"] * raw["identity_rel_ci"]
    )
    for name in ("conv3x3", "copy"):
        raw[f"ratio_vs_{name}"] = raw["latency_s"] / raw[f"{name}_s"]
        # relative uncertainties of a ratio add in quadrature
        raw[f"ratio_vs_{name}_rel_ci"] = np.hypot(raw["latency_rel_ci"], raw[f"{name}_rel_ci"])
    raw = raw.sort_values(["batch", "channels", "height", "width", "variant"]).reset_index(
        drop=True
    )
    scale, unit = unit or latency_unit(raw["latency_s"])

    def with_interval(values, half_widths):
        return [
            "-" if not np.isfinite(v) else format_measured(v, h) + (
                f" ± {format_measured(h, h)}" if np.isfinite(h) else "")
            for v, h in zip(values, half_widths, strict=True)
        ]  # fmt: skip

    display = pd.DataFrame({
        "B": raw["batch"],
        "C": raw["channels"],
        "H x W": _resolution(raw),
        "variant": raw["variant"] + raw["flagged"].map({True: f" {FLAGGED_MARK}", False: ""}),
        f"latency ({unit})": with_interval(raw["latency_s"] * scale,
                                           raw["latency_s"] * raw["latency_rel_ci"] * scale),
        f"added vs identity ({unit})": with_interval(raw["added_vs_identity_s"] * scale,
                                                     raw["added_vs_identity_ci_s"] * scale),
        "x conv3x3": with_interval(raw["ratio_vs_conv3x3"], raw["ratio_vs_conv3x3"] * raw["ratio_vs_conv3x3_rel_ci"]),
        "x copy": with_interval(raw["ratio_vs_copy"], raw["ratio_vs_copy"] * raw["ratio_vs_copy_rel_ci"]),
    })  # fmt: skip
    kept = [
        *keys,
        "variant",
        "latency_s",
        "latency_rel_ci",
        "added_vs_identity_s",
        "added_vs_identity_ci_s",
        "ratio_vs_conv3x3",
        "ratio_vs_conv3x3_rel_ci",
        "ratio_vs_copy",
        "ratio_vs_copy_rel_ci",
        "flagged",
    ]
    return display, raw[kept]


def _relative_half_width(frame: pd.DataFrame) -> pd.Series:
    return (frame["latency_ci_high_s"] - frame["latency_ci_low_s"]) / 2 / frame["latency_median_s"]


def cost_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """FLOPs, MACs, bytes moved, params and peak memory per variant, shape and mode."""
    keys = ["batch", "channels", "height", "width", "variant_label", "mode"]
    raw = (rows.groupby(keys, sort=False)[["params", "flops", "macs", "bytes_moved", "peak_memory_bytes"]]
           .first().reset_index())  # fmt: skip
    order = _variant_order(raw["variant_label"])
    raw = raw.assign(_order=raw["variant_label"].map(order.index))
    raw = raw.sort_values(["batch", "channels", "height", "width", "_order", "mode"])
    raw = raw.drop(columns="_order")
    display = pd.DataFrame({
        "B": raw["batch"],
        "C": raw["channels"],
        "H x W": _resolution(raw),
        "variant": raw["variant_label"],
        "mode": raw["mode"],
        "params": raw["params"].map(lambda v: f"{int(v):,}"),
        "MFLOPs": (raw["flops"] / 1e6).map(format_exact),
        "MMACs": (raw["macs"] / 1e6).map(format_exact),
        "moved (MiB)": (raw["bytes_moved"] / 2**20).map(format_exact),
        "peak memory (MiB)": (raw["peak_memory_bytes"] / 2**20).map(format_exact),
    })  # fmt: skip
    return display.reset_index(drop=True), raw.reset_index(drop=True)


def simulated_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A simulated run's counts per variant and shape (`timing.instrument: simulated`): the
    median counted call's instructions, cache misses and estimated cycles with their spread,
    the cycles over the copy's beside it, and the simulated last level's traffic beside the
    bytes the counter predicts."""
    keys = ["batch", "channels", "height", "width"]
    columns = ["instructions", "l1_misses", "ll_misses", "estimated_cycles", "cycles_spread",
               "ll_bytes", "bytes_moved"]  # fmt: skip
    raw = rows[[*keys, "variant_label", *columns]].copy()
    copies = rows[rows["variant_label"] == "copy"].set_index(keys)["estimated_cycles"]
    raw["cycles_over_copy"] = [
        row["estimated_cycles"] / copies.get(tuple(row[k] for k in keys), np.nan)
        for _, row in raw.iterrows()
    ]
    order = _variant_order(raw["variant_label"])
    raw = raw.assign(_order=raw["variant_label"].map(order.index))
    raw = raw.sort_values([*keys, "_order"]).drop(columns="_order")
    display = pd.DataFrame({
        "B": raw["batch"],
        "C": raw["channels"],
        "H x W": _resolution(raw),
        "variant": raw["variant_label"],
        "instructions (M)": (raw["instructions"] / 1e6).map(format_exact),
        "L1 misses (k)": (raw["l1_misses"] / 1e3).map(format_exact),
        "LL misses (k)": (raw["ll_misses"] / 1e3).map(format_exact),
        "est. cycles (M) ± spread": [
            f"{c / 1e6:.4g} ± {s:.1%}" for c, s in zip(raw["estimated_cycles"],
                                                        raw["cycles_spread"], strict=True)
        ],
        "cycles / copy": raw["cycles_over_copy"].map(lambda v: "-" if not np.isfinite(v) else f"{v:.2f}"),
        "LL traffic (MiB)": (raw["ll_bytes"] / 2**20).map(format_exact),
        "counted moved (MiB)": (raw["bytes_moved"] / 2**20).map(format_exact),
    })  # fmt: skip
    return display.reset_index(drop=True), raw.reset_index(drop=True)


def network_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ECA-Net paper's table: params, GFLOPs, training and inference images/s."""
    forward = rows[rows["mode"] == "infer"].set_index("variant_label")
    speed = rows.pivot_table(
        index="variant_label", columns="mode", values="images_per_s", aggfunc="first"
    )
    labels = _network_order(rows["variant_label"])
    raw = pd.DataFrame(index=pd.Index(labels, name="variant"))
    raw["model"] = rows["model"].iloc[0]
    raw["params"] = rows.groupby("variant_label")["params"].first().reindex(labels)
    # per image, as papers give them (the counts cover the whole batch)
    raw["forward_flops_per_image"] = (forward["flops"] / forward["batch"]).reindex(labels)
    raw["forward_macs_per_image"] = (forward["macs"] / forward["batch"]).reindex(labels)
    for mode in ("train", "infer"):
        raw[f"{mode}_images_per_s"] = speed[mode].reindex(labels) if mode in speed else np.nan
        of_mode = rows[rows["mode"] == mode].set_index("variant_label")
        # images/s is batch / time: the time's interval, turned over
        batch = of_mode["batch"].astype(float)
        raw[f"{mode}_images_per_s_ci_low"] = (batch / of_mode["latency_ci_high_s"]).reindex(labels)
        raw[f"{mode}_images_per_s_ci_high"] = (batch / of_mode["latency_ci_low_s"]).reindex(labels)
        flagged = of_mode["quality_flags"].map(bool).reindex(labels)
        raw[f"{mode}_flagged"] = flagged.fillna(False).astype(bool)
    name = raw["model"].iloc[0].replace("resnet", "ResNet-")

    def speed_cells(mode: str) -> list[str]:
        cells = []
        for value, low, high, flagged in zip(
            raw[f"{mode}_images_per_s"], raw[f"{mode}_images_per_s_ci_low"],
            raw[f"{mode}_images_per_s_ci_high"], raw[f"{mode}_flagged"], strict=True,
        ):  # fmt: skip
            cell = format_exact(value, 3)
            if np.isfinite(low) and np.isfinite(high):
                cell += f" [{format_exact(low, 3)}, {format_exact(high, 3)}]"
            cells.append(cell + (f" {FLAGGED_MARK}" if flagged else ""))
        return cells

    display = pd.DataFrame({
        "model": [name if v == "none" else f"{name} + {v}" for v in labels],
        "params (10^6)": (raw["params"] / 1e6).map(lambda v: f"{v:.3f}"),
        "params (2^20)": (raw["params"] / 2**20).map(lambda v: f"{v:.3f}"),
        "GMACs / image": (raw["forward_macs_per_image"] / 1e9).map(lambda v: f"{v:.3f}"),
        "GFLOPs / image": (raw["forward_flops_per_image"] / 1e9).map(lambda v: f"{v:.3f}"),
        "train (images/s) [95% CI]": speed_cells("train"),
        "infer (images/s) [95% CI]": speed_cells("infer"),
    })  # fmt: skip
    return display, raw.reset_index()


def _network_order(labels) -> list[str]:
    labels = list(dict.fromkeys(labels))
    return (["none"] if "none" in labels else []) + sorted(v for v in labels if v != "none")


def failures_table(results: pd.DataFrame) -> pd.DataFrame:
    failed = results[results["status"] != "ok"].copy()
    failed["resolution"] = _resolution(failed)
    columns = [
        "status",
        "role",
        "model",
        "variant_label",
        "channels",
        "resolution",
        "dtype",
        "device",
        "mode",
        "error",
    ]
    return failed[columns].reset_index(drop=True)


# ---- writing ---------------------------------------------------------------------------------


def _latex_escape(text: str) -> str:
    for char, escaped in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
        ("^", r"\^{}"),
        ("µ", r"$\mu$"),
    ):
        text = text.replace(char, escaped)
    return text


def write_table(
    display: pd.DataFrame, raw: pd.DataFrame, directory: Path, name: str, caption: str
) -> list[Path]:
    """`name`.md and `name`.tex (booktabs) from `display`, `name`.csv from `raw`."""
    directory.mkdir(parents=True, exist_ok=True)
    md, tex, csv = (directory / f"{name}.{ext}" for ext in ("md", "tex", "csv"))
    flat = display.reset_index() if _has_named_index(display) else display
    # disable_numparse: keep the digits chosen above (tabulate would reformat "1.90" as "1.9")
    md.write_text(f"{caption}\n\n{flat.to_markdown(index=False, disable_numparse=True)}\n")
    escaped = flat.copy()
    escaped.columns = [_latex_escape(str(c)) for c in escaped.columns]
    escaped = escaped.map(lambda v: _latex_escape(v) if isinstance(v, str) else v)
    latex = escaped.style.hide(axis="index").to_latex(
        hrules=True,
        caption=_latex_escape(caption),
        label=f"tab:{name}",
        position="t",
        position_float="centering",
    )
    tex.write_text(latex)
    raw_flat = raw.reset_index() if _has_named_index(raw) else raw
    raw_flat.to_csv(csv, index=False)
    return [md, tex, csv]


def _has_named_index(frame: pd.DataFrame) -> bool:
    return any(name is not None for name in frame.index.names)
