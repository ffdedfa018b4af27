"""`python -m bench report RUN_DIR`: tables and charts from a run directory, and nothing else.

The report reads only the run directory, so an old run can be re-reported at any time.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..sweep.rundir import RunDirectory, RunDirectoryError, provenance_lines
from . import comparisons, plots, tables


def _ceiling_for(ceilings: pd.DataFrame | None, device: str, dtype: str) -> pd.Series | None:
    if ceilings is None:
        return None
    match = ceilings[(ceilings["device"] == device) & (ceilings["dtype"] == dtype)]
    return None if match.empty else match.iloc[0]


def report(run_dir: str | Path, *, charts: bool = True) -> list[Path]:
    """Write tables/ and plots/ (and report.md, an index of them) into `run_dir`."""
    run_dir = Path(run_dir)
    results = RunDirectory(run_dir).results()
    if results.empty:
        raise RunDirectoryError(f"{run_dir}: its results hold no rows; nothing to report")
    table_dir, plot_dir = run_dir / "tables", run_dir / "plots"
    written: list[Path] = []
    sections: list[str] = [f"# Report of {run_dir.name}", ""]
    if RunDirectory(run_dir).has_env:  # what was measured: the suite and the code under test
        sections += [f"- {line}" for line in provenance_lines(RunDirectory(run_dir).env())]
        sections += [""]
    colours = plots.palette(results)
    ceilings = RunDirectory(run_dir).ceilings()

    # a sweep over batch sizes gets a table and chart per batch: no dimension is ever dropped
    blocks = tables.ok_rows(results)
    # machines merged from shards (bench merge --allow-mixed) are drawn and tabled apart
    per_machine = ["machine"] if results.get("machine", pd.Series()).nunique() > 1 else []
    per_batch = per_machine + (["batch"] if blocks["batch"].nunique() > 1 else [])
    # a simulated run has counts, not times (timing.instrument: simulated)
    counted = blocks["estimated_cycles"].notna() & blocks["latency_median_s"].isna()
    env = RunDirectory(run_dir).env() if RunDirectory(run_dir).has_env else {}
    instrument = env.get("instrument") or {}
    formula = instrument.get("cycle_formula", "as the run's env.json gives it")
    for name, rows in tables.groups(blocks[counted], tables.SETTING + per_batch):
        display, raw = tables.simulated_table(rows)
        caption = (
            f"Simulated counts, batch {_batches(rows)}, {_setting(name)}: one call counted "
            "under valgrind (callgrind, simulated caches; the median of its counted calls), "
            f"estimated cycles = {formula}, ± the counted calls' spread ((largest - smallest) "
            "/ median); LL traffic is the last level's "
            "misses x 64 B, beside the bytes the dispatcher counter predicts."
        )
        written += tables.write_table(display, raw, table_dir, f"simulated_{name}", caption)
        sections += _section(f"Simulated counts, {_setting(name)}", name, "simulated")
    # one time unit for every table and chart of the report
    unit = tables.latency_unit(blocks.loc[~counted, "latency_median_s"])
    for name, rows in tables.groups(blocks[~counted], tables.SETTING + per_batch):
        display, raw, _ = tables.latency_table(rows, unit)
        caption = (
            f"Latency, median [IQR] in {unit[1]}, batch {_batches(rows)}, {_setting(name)}; "
            "digits shown to the 95% CI of the median (none: fewer than 6 samples); "
            f"{tables.FLAGGED_MARK} marks a measurement flagged in the `quality` column."
        )
        written += tables.write_table(display, raw, table_dir, f"latency_{name}", caption)
        if rows["role"].eq("variant").any() and rows["role"].eq("reference").any():
            display, raw = tables.overhead_table(rows, unit)
            caption = (
                f"Overhead, {_setting(name)}: added latency over identity, and latency as "
                "a multiple of a same-shape 3x3 convolution and of a plain copy, measured "
                "side by side in one run; ± is the 95% interval's half-width (none: fewer "
                f"than 6 samples); {tables.FLAGGED_MARK} marks a row whose variant or a "
                "reference beside it is flagged in the `quality` column."
            )
            written += tables.write_table(display, raw, table_dir, f"overhead_{name}", caption)
        sections += _section(f"Latency and overhead, {_setting(name)}", name, "latency", "overhead")
        if charts:
            written += plots.latency_vs_resolution(rows, plot_dir, name, colours, unit)
            device, dtype = rows["device"].iloc[0], rows["dtype"].iloc[0]
            written += plots.roofline(
                rows, _ceiling_for(ceilings, device, dtype), plot_dir, name, colours
            )
    for name, rows in tables.groups(
        blocks, ["device", "dtype", "memory_format", "compile", "launch", *per_batch]
    ):
        display, raw = tables.cost_table(rows)
        caption = (
            f"Cost per block, {_setting(name)}: FLOPs (1 MAC = 2 FLOPs, elementwise work "
            "included), MACs, bytes moved, parameters and peak memory above the inputs; "
            "bytes in MiB (2^20), FLOPs and MACs in millions (10^6); exact counts, no interval."
        )
        written += tables.write_table(display, raw, table_dir, f"cost_{name}", caption)
        if charts:
            written += plots.memory_vs_resolution(rows, plot_dir, name, colours)

    samples = RunDirectory(run_dir).samples() if RunDirectory(run_dir).has_samples() else None
    if samples is not None and comparisons.fused_pairs(blocks):
        traffic = RunDirectory(run_dir).kernel_traffic()
        for name, rows in tables.groups(blocks, ["device", "dtype", *per_machine]):
            display, raw = comparisons.fused_table(rows, samples, traffic)
            if display.empty:
                continue
            caption = (
                f"Fused against eager, {_setting(name)}: each block's time as a multiple of a "
                "copy of the same tensor timed right after each sample (one read and one write: "
                "the memory floor), the geometric mean over rounds of each round's median "
                "ratio with its 95% interval over rounds, and fused / eager; copy in ms."
                + (
                    " The fused block's bytes as the counter scores its op (inputs read and "
                    "outputs written once), beside the Triton kernels' loads and stores counted "
                    "under the interpreter; in MB (10^6) and in passes over x."
                    if traffic is not None
                    else ""
                )
            )
            written += tables.write_table(display, raw, table_dir, f"fused_{name}", caption)
            sections += _section(f"Fused against eager, {_setting(name)}", name, "fused")

    launched = tables.ok_rows(results, role=("variant", "reference", "network"))
    if set(launched["launch"]) >= {"eager", "graph"}:
        for name, rows in tables.groups(launched, ["device", "dtype", *per_machine]):
            display, raw = comparisons.launch_table(rows)
            if display.empty:
                continue
            caption = (
                f"Launch cost, {_setting(name)}: each case launched eagerly (device time plus "
                "the calls from Python) and replayed from a CUDA graph over rotated copies of "
                "its input (device time, with the L2 cold: `rotated / L2` is the traffic "
                "between two reads of one copy, in L2s); medians in us, the launch cost their "
                "difference."
            )
            written += tables.write_table(display, raw, table_dir, f"launch_{name}", caption)
            sections += _section(f"Launch cost, {_setting(name)}", name, "launch")

    network = tables.ok_rows(results, role="network")
    per_batch = per_machine + (["batch"] if network["batch"].nunique() > 1 else [])
    for name, rows in tables.groups(
        network, ["model", "device", "dtype", "memory_format", "compile", "launch", *per_batch]
    ):
        display, raw = tables.network_table(rows)
        caption = (
            f"{_setting(name)}, batch {_batches(rows)}, {rows['height'].iloc[0]}x"
            f"{rows['width'].iloc[0]}: params in millions of 10^6 and of 2^20 (the ECA-Net "
            "paper's unit), forward GMACs and GFLOPs (10^9) per image, images/s with the "
            f"95% interval of its time; {tables.FLAGGED_MARK} marks a measurement flagged in "
            "the `quality` column."
        )
        written += tables.write_table(display, raw, table_dir, f"network_{name}", caption)
        if charts:
            written += plots.network_overhead(raw, plot_dir, name, colours)
    for name, rows in tables.groups(
        network if samples is not None else network.iloc[:0],
        ["model", "device", "dtype", "memory_format", *per_machine],
    ):
        display, raw = comparisons.network_ratio_table(rows, samples)
        if display.empty or len(raw) <= len(display):  # the plain network alone: nothing to set
            continue
        caption = (
            f"{_setting(name)}: each network's time as a ratio to the plain (eager) network in "
            f"the same round, geometric mean over rounds [95% CI]; plain in ms per call; "
            f"{tables.FLAGGED_MARK} flagged in `quality`."
        )
        written += tables.write_table(display, raw, table_dir, f"network_ratio_{name}", caption)
        sections += _section(f"Networks against the plain one, {_setting(name)}", name,
                             "network_ratio")  # fmt: skip

    failed = tables.failures_table(results)
    if not failed.empty:
        written += tables.write_table(
            failed, failed, table_dir, "failures", f"{len(failed)} cases did not run to completion."
        )
        sections += ["## Cases that did not complete", "", failed.to_markdown(index=False), ""]
    index = run_dir / "report.md"
    index.write_text("\n".join(sections + _listing(written, run_dir)) + "\n")
    return [*written, index]


def _batches(rows: pd.DataFrame) -> str:
    return ", ".join(str(b) for b in sorted(rows["batch"].unique()))


def _setting(name: str) -> str:
    return name.replace("_", " ")


def _section(title: str, name: str, *kinds: str) -> list[str]:
    lines = [f"## {title}", ""]
    lines += [f"- [{kind} table](tables/{kind}_{name}.md)" for kind in kinds]
    return [*lines, ""]


def _listing(paths: list[Path], run_dir: Path) -> list[str]:
    """Every table written, linked (with the start of its caption), then every chart."""
    tables_md = [p for p in paths if p.suffix == ".md" and p.parent.name == "tables"]
    lines = ["## Every table", ""]
    for path in tables_md:
        title = re.split(r"[:;]", path.read_text().split("\n", 1)[0])[0]
        lines.append(f"- [{path.stem}]({path.relative_to(run_dir)}): {title}")
    pngs = [p for p in paths if p.suffix == ".png" and p.stem.endswith("_full")]
    return [*lines, "", "## Charts", ""] + [f"![{p.stem}]({p.relative_to(run_dir)})" for p in pngs]
