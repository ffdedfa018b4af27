"""Headless Chromium for the tests that open pages: skipped where it is missing, unless
`BENCH_REQUIRE_BROWSER=1` (as `.ci/run` sets) makes that a failure."""

import os

import pytest

from bench.history.site import headless_chromium


def chromium(width: int, height: int):
    try:
        return headless_chromium(width=width, height=height, console_log=True)
    except RuntimeError as error:
        if os.environ.get("BENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"BENCH_REQUIRE_BROWSER=1 but {error}")
        pytest.skip(str(error))
