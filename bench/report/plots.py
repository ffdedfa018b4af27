"""Charts fit for a paper (seaborn): PNG at 300 dpi, PDF with Type 42 fonts, and SVG.

Each chart comes in two widths, a paper column (3.5 in) and a full page width (7 in); every
variant keeps one colour across all charts; legends sit outside the data.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..sweep.rundir import REFERENCE_NAMES, RunDirectory
from . import roofs

COLUMN_WIDTH_IN = 3.5
LEGEND_ROW_IN = 0.13  # a legend row at 6 pt
MARK = "mark"  # the gid of what a chart draws besides the variants (roofs, reasons)
LEGEND_CHAR_IN = 0.047  # a character of a legend label at 6 pt, a little over the average
LEGEND_HANDLE_IN = 0.45  # the handle and the gaps around an entry
FULL_WIDTH_IN = 7.0
DPI = 300
FORMATS = ("png", "pdf", "svg")
# greys and dashes for the references, in REFERENCE_NAMES order (identity, copy, conv3x3)
REFERENCE_COLOURS = dict(zip(REFERENCE_NAMES, ("#9e9e9e", "#5f5f5f", "#000000"), strict=True))
REFERENCE_STYLE = dict(zip(REFERENCE_NAMES, ((1, 2), (4, 2), (6, 2, 1, 2)), strict=True))

RC = {
    "pdf.fonttype": 42,  # TrueType (Type 42) fonts: editable, accepted by publishers
    "ps.fonttype": 42,
    "svg.fonttype": "none",  # text stays text in SVG
    "savefig.dpi": DPI,  # no tight bbox: the figure size is the pixel size asked for
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6,
    "legend.title_fontsize": 6,
    "lines.linewidth": 1.0,
    "lines.markersize": 3,
}


def palette(results: pd.DataFrame) -> dict[str, str]:
    """One colour per variant label of the run directory's rows, the same in every chart of
    its report: plain variants first, in name order, then option variants (e.g.
    eca_mha(attention_impl=naive)) with colours of their own; references are greys."""
    labels = sorted(set(results["variant_label"].dropna()) - set(REFERENCE_COLOURS))
    plain = [label for label in labels if "(" not in label]
    options = [label for label in labels if "(" in label]
    # greys are the references' own: drop them from the variants' colours
    colours = [
        c
        for c in sns.color_palette("colorblind", 10) + sns.color_palette("dark", 10)
        if max(c) - min(c) > 0.1
    ]
    mapping = dict(REFERENCE_COLOURS)
    for i, label in enumerate(plain + options):
        mapping[label] = colours[i % len(colours)]
    return {k: matplotlib.colors.to_hex(v) for k, v in mapping.items()}


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*")


def markers(labels) -> dict[str, str]:
    """One marker per label (so lines that coincide still show both, and print in grey)."""
    ordered = _ordered(labels)
    return {label: MARKERS[i % len(MARKERS)] for i, label in enumerate(ordered)}


def _dashes(label: str):
    return REFERENCE_STYLE.get(label, "")


def _save(fig: plt.Figure, directory: Path, stem: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = directory / f"{stem}.{fmt}"
        fig.savefig(path, format=fmt, dpi=DPI)
        paths.append(path)
    plt.close(fig)
    return paths


def _pixels_axis(ax, frame: pd.DataFrame) -> None:
    ticks = sorted(frame["pixels"].unique())
    ax.set_xscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels([_resolution_label(frame, t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("feature map H x W (log scale)")


def _resolution_label(frame: pd.DataFrame, pixels: int) -> str:
    row = frame[frame["pixels"] == pixels].iloc[0]
    return f"{row['height']}x{row['width']}"


def _line_with_band(
    ax,
    frame: pd.DataFrame,
    x: str,
    y: str,
    low: str | None,
    high: str | None,
    colours: dict[str, str],
) -> None:
    marker_of = markers(colours)
    for label in _ordered(frame["variant_label"]):
        part = frame[frame["variant_label"] == label].sort_values(x)
        dashes = _dashes(label)
        (line,) = ax.plot(
            part[x],
            part[y],
            marker=marker_of[label],
            color=colours[label],
            label=label,
            markerfacecolor="none",
            markeredgewidth=0.8,
        )
        if dashes:
            line.set_dashes(dashes)
        if low and high:
            ax.fill_between(
                part[x], part[low], part[high], color=colours[label], alpha=0.2, linewidth=0
            )


def _ordered(labels) -> list[str]:
    labels = list(dict.fromkeys(labels))
    refs = [r for r in REFERENCE_COLOURS if r in labels]
    return refs + sorted(label for label in labels if label not in refs)


def _legend_outside(fig: plt.Figure, axes, width_in: float) -> None:
    """One legend below the panels, with every label any panel drew (in drawing order)."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    # references first, then variants by name, then the chart's own marks (roofs, reasons)
    marks = [label for label, handle in entries.items() if handle.get_gid() == MARK]
    labels = [label for label in _ordered(entries) if label not in marks] + marks
    # as many columns (up to 4) as the longest label lets fit across the figure
    entry_in = LEGEND_HANDLE_IN + LEGEND_CHAR_IN * max(len(label) for label in labels)
    columns = max(1, min(4, int(width_in // entry_in)))
    fig.legend(
        [entries[label] for label in labels],
        labels,
        loc="outside lower center",
        ncol=columns,
        frameon=False,
    )
    # the legend takes its rows from the figure: grow the figure by them, so the axes keep
    # their height (constrained layout would squeeze them to nothing at column width)
    rows = -(-len(labels) // columns)
    height = fig.get_size_inches()[1]
    fig.set_size_inches(width_in, height + rows * LEGEND_ROW_IN)


def _setting_title(rows: pd.DataFrame, name: str, shown: str = "") -> str:
    """What a figure shows: its setting (device, dtype, mode) and batch, and `shown` (the
    channel count of a column-width chart, say)."""
    batches = ", ".join(str(b) for b in sorted(rows["batch"].unique()))
    title = f"{name.replace('_', ' ')}, batch {batches}"
    return f"{title}\n{shown}" if shown else title


def _figure(width_in: float, height_in: float, panels: int = 1, sharey: bool = True):
    fig, axes = plt.subplots(
        1, panels, figsize=(width_in, height_in), sharey=sharey, squeeze=False, layout="constrained"
    )
    return fig, list(axes[0])


def latency_vs_resolution(
    rows: pd.DataFrame,
    directory: Path,
    name: str,
    colours: dict[str, str],
    unit: tuple[float, str] = (1.0, "s"),
) -> list[Path]:
    """Latency (median, 95% CI band) in `unit` (scale, name: the report's) against H x W,
    log-log, a line per variant; the full-width chart has a panel per channel count, the
    column chart shows the largest and its title says so."""
    scale, unit_name = unit
    rows = rows.assign(**{
        column: rows[column] * scale
        for column in ("latency_median_s", "latency_ci_low_s", "latency_ci_high_s")
    })  # fmt: skip
    paths = []
    channels = sorted(rows["channels"].unique())
    for width, panels, suffix in (
        (FULL_WIDTH_IN, channels, "full"),
        (COLUMN_WIDTH_IN, channels[-1:], "column"),
    ):
        with plt.rc_context(RC):
            fig, axes = _figure(width, 2.4, len(panels))
            for ax, c in zip(axes, panels, strict=True):
                part = rows[rows["channels"] == c]
                _line_with_band(
                    ax,
                    part,
                    "pixels",
                    "latency_median_s",
                    "latency_ci_low_s",
                    "latency_ci_high_s",
                    colours,
                )
                _pixels_axis(ax, part)
                ax.set_yscale("log")
                ax.set_title(f"C = {c}")
            axes[0].set_ylabel(f"latency, median ({unit_name}, log)")
            fig.suptitle(_setting_title(rows, name, _channels_shown(channels, panels)))
            _legend_outside(fig, axes, width)
            paths += _save(fig, directory, f"latency_vs_resolution_{name}_{suffix}")
    return paths


def _channels_shown(channels: list, panels: list) -> str:
    """'' when every swept channel count has its panel; else which one is shown."""
    if len(panels) == len(channels):
        return ""
    swept = ", ".join(str(c) for c in channels)
    return f"C = {panels[-1]}, the largest of {swept}"


def memory_vs_resolution(
    rows: pd.DataFrame, directory: Path, name: str, colours: dict[str, str]
) -> list[Path]:
    """Peak memory against H x W (log-log) per mode, at the largest channel count (the title
    says so): eca_mha's quadratic score matrix shows as the steeper slope of the naive
    attention. The column chart shows training, or the one mode swept."""
    channels = sorted(rows["channels"].unique())
    c = channels[-1]
    part = rows[(rows["channels"] == c) & (rows["peak_memory_bytes"] > 0)].copy()
    part["peak_memory_mib"] = part["peak_memory_bytes"] / 2**20
    modes = sorted(part["mode"].unique())
    paths = []
    for width, suffix in ((FULL_WIDTH_IN, "full"), (COLUMN_WIDTH_IN, "column")):
        with plt.rc_context(RC):
            shown = modes if suffix == "full" else modes[-1:]
            fig, axes = _figure(width, 2.4, len(shown))
            for ax, mode in zip(axes, shown, strict=True):
                _line_with_band(
                    ax, part[part["mode"] == mode], "pixels", "peak_memory_mib", None, None, colours
                )
                _pixels_axis(ax, part)
                ax.set_yscale("log")
                ax.set_title(mode)
            axes[0].set_ylabel("peak memory (MiB, log)")
            fig.suptitle(_setting_title(rows, name, _channels_shown(channels, [c])))
            _legend_outside(fig, axes, width)
            paths += _save(fig, directory, f"memory_vs_resolution_{name}_{suffix}")
    return paths


def compute_roof(part: pd.DataFrame, ceilings: pd.Series) -> tuple[float, str]:
    """The compute roof no kernel of the run beats: the best of the matmul the ceilings
    measured and the run's own 3x3 convolutions, and which one it is."""
    matmul = float(ceilings["peak_flops_per_s"])
    conv = part.loc[part["variant_label"] == "conv3x3", "achieved"]
    best_conv = float(conv.max()) if len(conv) else 0.0
    if best_conv > matmul:
        return best_conv, f"compute: conv3x3 of this run, {best_conv / 1e9:.0f} GFLOP/s"
    return matmul, f"compute: matmul, {matmul / 1e9:.0f} GFLOP/s"


def roofline(
    rows: pd.DataFrame,
    ceilings: pd.Series | None,
    directory: Path,
    name: str,
    colours: dict[str, str],
) -> list[Path]:
    """Arithmetic intensity (FLOPs/byte) against achieved FLOP/s, under the roofs measured in
    the same run: the large copy's (black), the fastest copy in cache (grey) and the compute
    roof (`compute_roof`); a grey dash under each point marks its own roof, a copy of its
    working set (`bench.report.roofs`). Points above their own roof are ringed, each reason
    named once in the legend."""
    part = rows[(rows["flops"] > 0) & (rows["bytes_moved"] > 0)].copy()
    part["intensity"] = part["flops"] / part["bytes_moved"]
    part["achieved"] = part["flops"] / part["latency_median_s"]
    if ceilings is not None:
        ladder = RunDirectory.copy_ladder(ceilings)
        peak, peak_label = compute_roof(part, ceilings)
        part = roofs.with_roofs(part, ladder, peak)
    paths = []
    for width, suffix in ((FULL_WIDTH_IN, "full"), (COLUMN_WIDTH_IN, "column")):
        with plt.rc_context(RC):
            fig, (ax,) = _figure(width, 2.6)
            marker_of = markers(colours)
            for label in _ordered(part["variant_label"]):
                sel = part[part["variant_label"] == label]
                ax.scatter(
                    sel["intensity"],
                    sel["achieved"],
                    s=12,
                    marker=marker_of[label],
                    facecolors="none",
                    edgecolors=colours[label],
                    linewidths=0.8,
                    label=label,
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            if ceilings is not None:
                _draw_roofs(ax, part, ladder, ceilings, peak, peak_label)
            ax.set_xlabel("FLOPs per byte moved (log)")
            ax.set_ylabel("achieved FLOP/s (log)")
            ax.set_title(_setting_title(rows, name))
            _legend_outside(fig, [ax], width)
            paths += _save(fig, directory, f"roofline_{name}_{suffix}")
    return paths


def _draw_roofs(
    ax, part: pd.DataFrame, ladder, ceilings: pd.Series, peak: float, peak_label: str
) -> None:
    bandwidth = ceilings["memory_bandwidth_bytes_per_s"]
    fastest_size, fastest = max(ladder, key=lambda rung: rung[1])
    lo = part["intensity"].min() / 3
    hi = max(part["intensity"].max(), peak / bandwidth) * 3
    x = np.logspace(np.log10(lo), np.log10(hi), 200)
    ax.plot(
        x, np.minimum(fastest * x, peak), color="0.6", linewidth=0.8, linestyle="--",
        label=f"copy in cache: {fastest / 1e9:.0f} GB/s ({_bytes_label(fastest_size)})", gid=MARK,
    )  # fmt: skip
    ax.plot(x, np.minimum(bandwidth * x, peak), color="black", linewidth=1.2,
            label=f"copy from memory: {bandwidth / 1e9:.0f} GB/s", gid=MARK)  # fmt: skip
    ax.axhline(peak, color="black", linewidth=0.6, linestyle=":", label=peak_label, gid=MARK)
    ax.scatter(
        part["intensity"], part["roof"], marker="_", s=30, color="0.45", linewidths=0.8,
        label="own roof: a copy of its working set", zorder=0, gid=MARK,
    )  # fmt: skip
    for note, ring in ((roofs.MEMORY_NOTE, "o"), (roofs.COMPUTE_NOTE, "s")):
        above = part[part["roof_note"] == note]
        if len(above):
            ax.scatter(above["intensity"], above["achieved"], marker=ring, s=40,
                       facecolors="none", edgecolors="0.3", linewidths=0.5, label=note,
                       gid=MARK)  # fmt: skip


def _bytes_label(size: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.0f} {unit}"
    return f"{size:.0f} B"


def network_overhead(
    raw: pd.DataFrame, directory: Path, name: str, colours: dict[str, str]
) -> list[Path]:
    """Bars: each variant's cost over the plain backbone, in params, FLOPs and images/s."""
    base = raw[raw["variant"] == "none"]
    if base.empty:
        return []
    base = base.iloc[0]
    others = raw[raw["variant"] != "none"]
    records = []
    for _, row in others.iterrows():
        records.append((row["variant"], "params", 100 * (row["params"] / base["params"] - 1)))
        records.append(
            (
                row["variant"],
                "FLOPs",
                100 * (row["forward_flops_per_image"] / base["forward_flops_per_image"] - 1),
            )
        )
        for mode in ("infer", "train"):
            column = f"{mode}_images_per_s"
            if column in row and np.isfinite(row[column]) and np.isfinite(base[column]):
                # slowdown: how much longer an image takes than on the plain backbone
                records.append(
                    (row["variant"], f"{mode} time", 100 * (base[column] / row[column] - 1))
                )
    frame = pd.DataFrame(records, columns=["variant", "metric", "overhead_percent"])
    paths = []
    for width, suffix in ((FULL_WIDTH_IN, "full"), (COLUMN_WIDTH_IN, "column")):
        with plt.rc_context(RC):
            fig, (ax,) = _figure(width, 2.6 if suffix == "full" else 3.0)
            sns.barplot(
                frame,
                x="metric",
                y="overhead_percent",
                hue="variant",
                ax=ax,
                palette={v: colours.get(v, "#333333") for v in frame["variant"]},
                saturation=1.0,
            )  # the same colour as in every other chart
            for container in ax.containers:  # values too small to see as bars still read
                ax.bar_label(container, fmt="%.2g", fontsize=5, padding=1)
            ax.set_xlabel("")
            ax.set_ylabel("over the plain backbone (%)")
            ax.axhline(0, color="black", linewidth=0.6)
            ax.legend_.remove()
            _legend_outside(fig, [ax], width)
            paths += _save(fig, directory, f"network_overhead_{name}_{suffix}")
    return paths


def _drawn_texts(fig: plt.Figure) -> list:
    """Every text the figure draws: tick labels inside the view, axis labels, titles, notes
    and legends (tick labels of ticks outside the view exist but are not drawn)."""
    texts = [*fig.texts]
    for legend in fig.legends:
        texts += [*legend.get_texts(), legend.get_title()]
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis._update_ticks():  # the ticks drawn: matplotlib's own choice
                texts += [tick.label1, tick.label2]
            texts += [axis.label, axis.get_offset_text()]
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.get_legend() is not None:
            texts += [*ax.get_legend().get_texts(), ax.get_legend().get_title()]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def text_collisions(fig: plt.Figure) -> list[str]:
    """Every text of `fig` that overlaps another or leaves the figure, as lines (an empty
    list: a chart a paper can print). matplotlib gives each drawn text its window extent."""
    from itertools import combinations

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _drawn_texts(fig)]
    frame = fig.bbox
    problems = [
        f"{text!r} leaves the figure"
        for text, box in boxes
        if box.x0 < frame.x0 - 1 or box.y0 < frame.y0 - 1 or box.x1 > frame.x1 + 1
        or box.y1 > frame.y1 + 1
    ]  # fmt: skip
    for (a, box_a), (b, box_b) in combinations(boxes, 2):
        width = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        height = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        if width > 1 and height > 1:  # a pixel of antialiasing is no collision
            problems.append(f"{a!r} overlaps {b!r}")
    return problems
