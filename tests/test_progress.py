"""A sweep's progress off a terminal: whole lines, a few of them, no carriage returns."""

import io

from tqdm import tqdm

from bench.sweep.progress import LINE_EVERY_PERCENT, LineProgress, progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_progress_is_a_line_every_tenth():
    stream = io.StringIO()
    bar = progress(1000, "sweep", quiet=False, stream=stream)
    assert isinstance(bar, LineProgress)
    for step in range(1000):
        bar.set_postfix_str(f"case {step}")
        bar.update(1)
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 100 // LINE_EVERY_PERCENT
    assert lines[0].startswith("sweep: 100/1000 (10%)") and "case 99" in lines[0]
    assert lines[-1].startswith("sweep: 1000/1000 (100%)")


def test_a_line_is_written_when_time_passes_without_a_tenth(monkeypatch):
    clock = iter([0.0, 1.0, 40.0, 41.0, 42.0])
    monkeypatch.setattr("bench.sweep.progress.time.monotonic", lambda: next(clock))
    stream = io.StringIO()
    bar = LineProgress(1000, "sweep", stream)
    bar.update(1)  # at 1 s: nothing yet
    bar.update(1)  # at 40 s: a line, though only 0.2% is done
    assert stream.getvalue().splitlines() == ["sweep: 2/1000 (0%) in 40 s, about 19960 s left"]


def test_on_a_terminal_the_bar_stays_and_quiet_is_silent():
    assert isinstance(progress(10, "sweep", quiet=False, stream=Terminal()), tqdm)
    silent = progress(10, "sweep", quiet=True, stream=Terminal())
    assert silent.disable
