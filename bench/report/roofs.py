"""Which roof applies to each point of a roofline: the copy bandwidth of its own working set.

A block whose input, output and intermediates fit in a cache is fed at that cache's speed, not
memory's: a roofline with one roof (a copy far larger than the caches) shows small cases above
it. The run's ceilings hold a ladder of copies (`copy_ladder` in ceilings.csv, from 32 KiB to
beyond the caches); a point's roof is the ladder's bandwidth at the point's working set, the
input plus the peak memory above it, read log-linearly between rungs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}


def roof_bandwidth(ladder: list[tuple[float, float]], working_set_bytes: float) -> float:
    """The copy bandwidth (bytes/s) at `working_set_bytes`: log-linear between the ladder's
    rungs, the end rungs' beyond them."""
    sizes = np.log([size for size, _ in ladder])
    speeds = np.log([speed for _, speed in ladder])
    return float(np.exp(np.interp(math.log(max(working_set_bytes, 1.0)), sizes, speeds)))


def working_set_bytes(rows: pd.DataFrame) -> pd.Series:
    """Each case's working set: its input, and the most memory live above it during a call."""
    elements = rows["batch"] * rows["channels"] * rows["height"] * rows["width"]
    return elements * rows["dtype"].map(ITEMSIZE).fillna(4) + rows["peak_memory_bytes"]


def with_roofs(
    rows: pd.DataFrame, ladder: list[tuple[float, float]], peak_flops: float
) -> pd.DataFrame:
    """`rows` with `intensity` (FLOPs per byte moved), `achieved` (FLOP/s), `working_set`,
    `roof` (FLOP/s of its own roof: its working set's copy bandwidth x intensity, at most the
    matmul peak), `above_roof` and, for a point above it, `roof_note`: why it can be."""
    part = rows.copy()
    part["intensity"] = part["flops"] / part["bytes_moved"]
    part["achieved"] = part["flops"] / part["latency_median_s"]
    part["working_set"] = working_set_bytes(part)
    bandwidth = part["working_set"].map(lambda size: roof_bandwidth(ladder, size))
    part["roof"] = np.minimum(bandwidth * part["intensity"], peak_flops)
    part["above_roof"] = part["achieved"] > part["roof"]
    part["roof_note"] = ""
    above = part["above_roof"]
    compute = above & (part["roof"] >= peak_flops)
    part.loc[compute, "roof_note"] = COMPUTE_NOTE
    # its ops' traffic counted against its working set: what is read again comes from cache
    part.loc[above & ~compute, "roof_note"] = MEMORY_NOTE
    return part


# why a point can sit above its roof; one reason is said once (a chart's legend), not per point
COMPUTE_NOTE = "above the compute roof"
MEMORY_NOTE = "above its roof: its ops re-read from cache"
