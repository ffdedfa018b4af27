"""Each roofline point's own roof: the copy ladder read at its working set."""

import math

import pandas as pd
import pytest

from bench.report.roofs import COMPUTE_NOTE, MEMORY_NOTE, roof_bandwidth, with_roofs

LADDER = [(2**15, 40e9), (2**21, 160e9), (2**29, 25e9)]


def test_the_roof_is_log_linear_between_rungs_and_flat_beyond_them():
    assert roof_bandwidth(LADDER, 2**10) == pytest.approx(40e9)
    assert roof_bandwidth(LADDER, 2**30) == pytest.approx(25e9)
    # halfway in log size between 32 KiB and 2 MiB: the geometric mean of their bandwidths
    assert roof_bandwidth(LADDER, 2**18) == pytest.approx(math.sqrt(40e9 * 160e9))


def test_points_above_their_own_roof_carry_the_reason():
    rows = pd.DataFrame({
        "batch": [1, 1, 1], "channels": [64, 64, 64], "height": [8, 8, 8], "width": [8, 8, 8],
        "dtype": ["float32"] * 3, "peak_memory_bytes": [2**21 - 2**14] * 3,
        "flops": [1e6, 1e6, 1e12], "bytes_moved": [4e6, 4e6, 1e6],
        "latency_median_s": [1.0, 1e-5, 1.0],
    })  # fmt: skip
    part = with_roofs(rows, LADDER, peak_flops=5e11)
    assert list(part["working_set"]) == [2**21] * 3  # input 16 KiB + peak
    assert list(part["above_roof"]) == [False, True, True]
    assert part["roof"][1] == pytest.approx(160e9 * 0.25)  # its working set's bandwidth x FLOPs/B
    assert part["roof_note"][1] == MEMORY_NOTE
    assert part["roof_note"][2] == COMPUTE_NOTE
