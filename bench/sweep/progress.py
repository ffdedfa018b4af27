"""A sweep's progress: tqdm's bar on a terminal, a plain line now and then anywhere else.

A bar redrawn with carriage returns is what a terminal wants and what a CI log or a file does
not: `run_all.py > log` would hold one line of thousands of frames. Off a terminal, a line is
written when another `LINE_EVERY_PERCENT` of the work is done or `LINE_EVERY_S` have passed,
whichever comes first, and a failure's line at once.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

LINE_EVERY_S = 30.0
LINE_EVERY_PERCENT = 10


class LineProgress:
    """tqdm's calls the sweep makes (`update`, `set_postfix_str`, `write`, `close`), written
    as whole lines."""

    def __init__(self, total: int, desc: str, stream: TextIO):
        self.total, self.desc, self.stream = total, desc, stream
        self.done = 0
        self.postfix = ""
        self.started = self.last_line = time.monotonic()
        self.last_share = 0

    def update(self, n: int = 1) -> None:
        self.done += n
        share = 100 * self.done // max(self.total, 1)
        now = time.monotonic()
        next_share = self.last_share + LINE_EVERY_PERCENT
        if share >= next_share or now - self.last_line >= LINE_EVERY_S:
            self._line(now)
            self.last_share = share - share % LINE_EVERY_PERCENT

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def write(self, text: str) -> None:
        print(text, flush=True)  # where tqdm.write puts it: standard output

    def close(self) -> None:
        if self.done and self.last_share < 100:
            self._line(time.monotonic())
            self.last_share = 100

    def _line(self, now: float) -> None:
        elapsed = now - self.started
        share = self.done / max(self.total, 1)
        left = f", about {elapsed * (1 - share) / share:.0f} s left" if 0 < share < 1 else ""
        postfix = f"; {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.done}/{self.total} ({share:.0%}) in {elapsed:.0f} s{left}"
              f"{postfix}", file=self.stream, flush=True)  # fmt: skip
        self.last_line = now


def progress(total: int, desc: str, quiet: bool, stream: TextIO | None = None):
    """tqdm's bar on a terminal (a silent one when quiet); `LineProgress` where the stream is
    a file or a pipe."""
    stream = stream or sys.stderr
    if quiet:
        return tqdm(total=total, disable=True)
    if stream.isatty():
        return tqdm(total=total, unit="round", dynamic_ncols=True, desc=desc, file=stream)
    return LineProgress(total, desc, stream)
