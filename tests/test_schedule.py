"""The sweep's round scheduler, driven by simulated cases on a fake clock (no timing at all)."""

import math
from dataclasses import dataclass, field

import pytest

from bench.measurement.case import TimingBudget
from bench.sweep.schedule import RoundScheduler

Z = 1.96  # a median's 95% interval of n samples of spread sd is about Z x 1.25 sd / sqrt(n)


@dataclass
class FakeCase:
    """A case whose samples cost `per_sample_s` each, whose round costs `fixed_s` besides, and
    whose interval narrows as 1 / sqrt(samples) from a relative spread `sd`."""

    per_sample_s: float
    sd: float
    fixed_s: float = 0.01
    samples: int = 0
    rounds: int = 0
    sampling: list[float] = field(default_factory=list)

    def width(self) -> float:
        return math.nan if self.samples < 6 else Z * 1.25 * self.sd / math.sqrt(self.samples)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def time_round(case: FakeCase, settings: dict, clock: FakeClock) -> dict:
    """What `measure` does with these settings, on the fake clock: samples until its time cap,
    and at least min(min_samples, 3) however long a sample is."""
    n = max(min(settings["min_samples"], 3), math.floor(settings["max_time_s"] / case.per_sample_s))
    sampling = n * case.per_sample_s
    clock.now += case.fixed_s + sampling
    case.samples += n
    case.rounds += 1
    case.sampling.append(sampling)
    return dict(cost_s=case.fixed_s + sampling, timed_s=sampling + case.fixed_s / 2,
                sampling_s=sampling, samples=n, width=case.width())  # fmt: skip


def run(cases: dict[str, FakeCase], **timing) -> tuple[RoundScheduler, FakeClock, list[list]]:
    """A whole sweep's scheduling: the first pass over every case, then the planned passes."""
    clock = FakeClock()
    scheduler = RoundScheduler(TimingBudget(**timing), clock=clock, started=0.0)
    first = scheduler.first_settings()
    for key, case in cases.items():
        scheduler.record(key, **time_round(case, first, clock))
    passes = []
    while planned := scheduler.next_pass():
        passes.append([entry.key for entry in planned])
        for entry in planned:
            scheduler.record(entry.key, **time_round(cases[entry.key], entry.settings, clock))
        assert len(passes) < 1000, "the scheduler never ends"
    return scheduler, clock, passes


TIMING = dict(warmup_s=0.0, min_time_s=0.03, max_time_s=1.0, target_ci=0.03, min_samples=6,
              min_rounds=3, rounds=6)  # fmt: skip


def test_a_tight_case_stops_at_the_minimum_rounds_and_a_wide_one_gets_more_and_longer_ones():
    cases = {"tight": FakeCase(1e-3, sd=0.01), "wide": FakeCase(1e-3, sd=0.5)}
    scheduler, _, passes = run(cases, **TIMING, sweep_budget_s=30.0)
    assert (cases["tight"].rounds, scheduler.cases["tight"].closed) == (3, "target")
    assert cases["wide"].rounds == 6 and scheduler.cases["wide"].closed == "rounds"
    # the passes after the third hold the wide case alone, and its rounds grow past the floor
    assert all(keys == ["wide"] for keys in passes[2:])
    assert max(cases["wide"].sampling) > 5 * max(cases["tight"].sampling)


def test_the_rounds_go_to_the_widest_intervals_first():
    cases = {f"c{i}": FakeCase(2e-3, sd=sd) for i, sd in enumerate([0.1, 0.2, 0.4, 0.8])}
    _, _, passes = run(cases, **TIMING, sweep_budget_s=1.2)  # too little for all
    assert passes[2:], "no pass past the minimum rounds"
    sampled = {key: sum(case.sampling) for key, case in cases.items()}
    assert sampled["c3"] > sampled["c2"] > sampled["c1"] > sampled["c0"]


@pytest.mark.parametrize("budget", [5.0, 20.0, 60.0])
def test_the_budget_is_kept_within_ten_percent(budget):
    # 60 cases of mixed speed and spread; their minimum rounds fit in every budget here
    cases = {
        f"c{i}": FakeCase(per_sample_s=1e-4 * (1 + i % 7), sd=0.02 + 0.1 * (i % 5), fixed_s=0.005)
        for i in range(60)
    }
    scheduler, clock, _ = run(cases, **TIMING, sweep_budget_s=budget)
    assert clock.now <= 1.1 * budget
    assert all(case.rounds >= 3 for case in cases.values())
    closed = {case.closed for case in scheduler.cases.values()}
    if budget >= 20:  # room to spare: every case ends on its own terms, not the budget's
        assert "budget" not in closed
    else:  # the budget ran out: wide cases were stopped by it, after spending it
        assert "budget" in closed and clock.now >= 0.9 * budget


def test_the_minimum_rounds_are_reached_even_when_the_budget_cannot_hold_them():
    cases = {f"c{i}": FakeCase(1e-3, sd=0.5) for i in range(20)}
    scheduler, clock, _ = run(cases, **TIMING, sweep_budget_s=0.5)
    assert clock.now > 0.5  # the minimum rounds cost more than the budget ...
    assert all(case.rounds == 3 for case in cases.values())  # ... and were all taken
    assert {c.closed for c in scheduler.cases.values()} == {"budget"}


def test_a_case_too_slow_for_its_cap_ends_with_fewer_rounds_and_says_so():
    cases = {"slow": FakeCase(per_sample_s=0.4, sd=0.05), "fast": FakeCase(1e-3, sd=0.01)}
    scheduler, _, _ = run(cases, **TIMING, sweep_budget_s=30.0)
    assert cases["slow"].rounds < 3 and scheduler.cases["slow"].closed == "cap"
    assert cases["fast"].rounds == 3


def test_without_a_budget_every_open_case_gets_its_caps_share_each_pass():
    cases = {"tight": FakeCase(1e-3, sd=0.01), "wide": FakeCase(1e-3, sd=0.5)}
    scheduler, _, passes = run(cases, **{**TIMING, "min_rounds": None, "rounds": 4})
    assert passes == [["tight", "wide"]] * 3  # min_rounds unset: every case takes `rounds`
    # each round its share of what is left of the 1 s cap
    assert cases["wide"].sampling == pytest.approx([0.25] * 4, rel=0.05)
    assert scheduler.budget_left_s is None


def test_a_failed_case_takes_no_more_rounds():
    cases = {"a": FakeCase(1e-3, sd=0.5), "b": FakeCase(1e-3, sd=0.5)}
    clock = FakeClock()
    scheduler = RoundScheduler(TimingBudget(**TIMING), clock=clock, started=0.0)
    for key, case in cases.items():
        scheduler.record(key, **time_round(case, scheduler.first_settings(), clock))
    scheduler.fail("a")
    assert [entry.key for entry in scheduler.next_pass()] == ["b"]
