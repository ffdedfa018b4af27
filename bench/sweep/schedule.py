"""How a sweep spends its time: which cases get another round, and how long each round samples.

The rule. The first pass times every case once. After it, the sweep goes on in passes over
the cases still *open*, in the sweep's order, so a case's rounds stay a pass apart.
A case closes, and its row is written, when

- ``target``: it has `timing.min_rounds` rounds and the 95% interval of its median (over all
  its rounds' samples) is within `timing.target_ci` of it;
- ``rounds``: it has `timing.rounds` rounds, the most a case gets;
- ``cap``: its own `timing.max_time_s` is spent;
- ``budget``: the sweep's budget is spent and it has its minimum rounds.

Without `timing.sweep_budget_s` every round, the first included, samples for its cap's share
(`round_settings`: what is left of `timing.max_time_s` over the rounds left). With it (seconds
from the sweep's start, building and counting included), the first pass gives every case its
shortest round (its share of `timing.min_time_s` and of `timing.min_samples`), and each later
pass may spend the budget left over the passes that may still come. In a pass, the cases short
of `min_rounds` come first, each with its shortest round; what is left of the pass's share goes to the open cases in order of how
far their interval is from the target, widest first, each a round as long as its interval
needs to reach the target in its remaining rounds (samples needed grow as the square of the
width: the interval of a median narrows as one over the root of the samples), at most its
cap's share. A case that does not fit waits for the next pass. Once the budget is spent, the
cases short of `min_rounds` still get their shortest rounds, since `bench compare` needs them,
and the others close.

Everything here is arithmetic over what the runner reports after each round (its cost, its
sampling time, its samples, the case's interval so far) and a clock passed in, so the tests
drive it with fake timers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from ..measurement.case import TimingBudget, round_settings
from ..measurement.timing import MIN_SAMPLES_FOR_CI

CLOSED_AS = {  # how the sweep's summary says, once, why cases took the rounds they took
    "target": "reached their interval's target (timing.target_ci)",
    "rounds": "took the most rounds allowed (timing.rounds, --rounds)",
    "cap": "spent their time cap, calls too slow for more rounds (timing.max_time_s, --max-time)",
    "budget": "stopped at the sweep's budget (timing.sweep_budget_s)",
}


@dataclass
class CaseProgress:
    """What one case's rounds so far say: enough to plan its next one."""

    rounds: int = 0
    timed_s: float = 0.0  # what its cap counts: the rounds' timed stretches
    samples: int = 0
    width: float = math.inf  # relative half-width of its median's 95% interval (inf: no CI)
    per_sample_s: float = 0.0  # sampling seconds per sample, its paired reference included
    fixed_s: float = 0.0  # a round's cost besides sampling: building, first call, warm-up
    closed: str = ""  # once it takes no more rounds: a key of CLOSED_AS, or "failed"


@dataclass
class Planned:
    """A round to time: the case and `measure`'s settings for it."""

    key: Hashable
    settings: dict[str, Any]


class RoundScheduler:
    """Plans a sweep's passes after the first (see the module's rule)."""

    def __init__(
        self, timing: TimingBudget, *, clock: Callable[[], float] = time.perf_counter,
        started: float | None = None,
    ):  # fmt: skip
        self.timing = timing
        self.clock = clock
        self.started = clock() if started is None else started
        self.max_rounds = timing.rounds
        self.min_rounds = min(timing.min_rounds or timing.rounds, timing.rounds)
        self.cases: dict[Hashable, CaseProgress] = {}

    # ---- what the runner tells it ---------------------------------------------------------

    def start(self) -> None:
        """The budget counts from now: what ran before (ceilings, kernel builds) is not in it."""
        self.started = self.clock()

    def first_settings(self) -> dict[str, Any]:
        """The first round of every case: its cap's share; with a budget, the shortest round
        (later passes lengthen the cases whose intervals need it)."""
        if self.timing.sweep_budget_s is None:
            return round_settings(self.timing, 0, 0.0)
        return self._settings(CaseProgress(), self._floor_s())

    def record(
        self, key: Hashable, *, cost_s: float, timed_s: float, sampling_s: float,
        samples: int, width: float,
    ) -> str:  # fmt: skip
        """A round of `key` was timed: it cost `cost_s` in all (`timed_s` of it against the
        cap, `sampling_s` of that sampling) and took `samples`; `width` is the case's interval
        over all its rounds. Returns why the case closed, or ''."""
        case = self.cases.setdefault(key, CaseProgress())
        case.rounds += 1
        case.timed_s += timed_s
        case.samples += samples
        case.width = width if width == width else math.inf  # NaN: no interval yet
        if samples:
            case.per_sample_s = sampling_s / samples
        case.fixed_s = max(cost_s - sampling_s, 0.0)
        case.closed = self._closing_reason(case)
        return case.closed

    def fail(self, key: Hashable) -> None:
        """`key` ended in an error: it takes no more rounds."""
        self.cases.setdefault(key, CaseProgress()).closed = "failed"

    # ---- what it tells the runner -----------------------------------------------------------

    @property
    def open_cases(self) -> list[Hashable]:
        return [key for key, case in self.cases.items() if not case.closed]

    @property
    def budget_left_s(self) -> float | None:
        """Seconds of the sweep's budget left (None: no budget)."""
        if self.timing.sweep_budget_s is None:
            return None
        return self.timing.sweep_budget_s - (self.clock() - self.started)

    def next_pass(self) -> list[Planned]:
        """The rounds of the next pass, in the sweep's order; [] when every case is closed."""
        left = self.budget_left_s
        if left is not None and left <= 0:
            for case in self.cases.values():
                if not case.closed and case.rounds >= self.min_rounds:
                    case.closed = "budget"
        open_keys = self.open_cases
        if not open_keys:
            return []
        if left is None:
            return [Planned(key, self._cap_share(self.cases[key])) for key in open_keys]
        chosen = self._fit(open_keys, max(left, 0.0))
        if not chosen:  # nothing fits in what is left: the open cases stop here
            for key in open_keys:
                self.cases[key].closed = "budget"
            return []
        return [Planned(key, self._settings(self.cases[key], chosen[key])) for key in open_keys
                if key in chosen]  # fmt: skip

    # ---- the rule's arithmetic --------------------------------------------------------------

    def _closing_reason(self, case: CaseProgress) -> str:
        if case.rounds >= self.min_rounds and case.width <= self.timing.target_ci:
            return "target"
        if case.rounds >= self.max_rounds:
            return "rounds"
        if self.timing.max_time_s - case.timed_s <= 0:
            return "cap"
        return ""

    def _cap_share(self, case: CaseProgress) -> dict[str, Any]:
        return round_settings(self.timing, case.rounds, case.timed_s)

    def _samples_per_round(self) -> int:
        """The round's share of min_samples, and at least 3: a round's median needs them."""
        return max(3, -(-self.timing.min_samples // self.min_rounds))

    def _floor_s(self) -> float:
        """The shortest sampling a round gets: its share of min_time_s."""
        return self.timing.min_time_s / self.min_rounds

    def _shortest_s(self, case: CaseProgress) -> float:
        """Sampling seconds of the shortest round: its share of min_time_s and of
        min_samples, at most its cap's share."""
        shortest = max(self._samples_per_round() * case.per_sample_s, self._floor_s())
        return min(shortest, self._cap_share(case)["max_time_s"])

    def _cost_s(self, case: CaseProgress, sampling_s: float) -> float:
        """What a round sampling for `sampling_s` costs in all: a round takes its 3 samples
        even past its time cap."""
        return case.fixed_s + max(sampling_s, 3 * case.per_sample_s)

    def _wanted_s(self, case: CaseProgress) -> float:
        """Sampling seconds this round for the interval to reach the target in the case's
        remaining rounds, between its shortest round and its cap's share."""
        cap = self._cap_share(case)["max_time_s"]
        shortest = self._shortest_s(case)
        if case.width <= self.timing.target_ci:
            return shortest
        if math.isinf(case.width):  # too few samples for an interval: enough for one
            missing = max(MIN_SAMPLES_FOR_CI - case.samples, 0) * case.per_sample_s
            return min(max(missing, shortest), cap)
        needed = case.samples * ((case.width / self.timing.target_ci) ** 2 - 1)
        rounds_left = max(self.max_rounds - case.rounds, 1)
        return min(max(needed / rounds_left * case.per_sample_s, shortest), cap)

    def _fit(self, open_keys: list[Hashable], left: float) -> dict[Hashable, float]:
        """Sampling seconds per case chosen for this pass, within its share of `left`: the
        cases short of min_rounds at their shortest, then the widest first as they fit."""
        cases = self.cases
        passes_left = max(self.max_rounds - cases[k].rounds for k in open_keys)
        allowance = left / max(passes_left, 1)
        chosen = {
            k: self._shortest_s(cases[k]) for k in open_keys if cases[k].rounds < self.min_rounds
        }
        spent = sum(self._cost_s(cases[k], t) for k, t in chosen.items())
        target = self.timing.target_ci
        widest_first = sorted(
            (k for k in open_keys if cases[k].width > target),
            key=lambda k: -cases[k].width,
        )
        for key in widest_first:
            case = cases[key]
            before = self._cost_s(case, chosen[key]) if key in chosen else 0.0
            room = allowance - spent + before  # what this case may cost in all
            wanted = self._wanted_s(case)
            if self._cost_s(case, wanted) <= room:
                sampling = wanted
            elif room - case.fixed_s > chosen.get(key, self._shortest_s(case)):
                sampling = room - case.fixed_s  # the pass's last room, to the widest left
            else:
                continue  # waits for the next pass (or runs at its shortest if it must)
            chosen[key] = sampling
            spent += self._cost_s(case, sampling) - before
        return chosen

    def _settings(self, case: CaseProgress, sampling_s: float) -> dict[str, Any]:
        settings = dict(self._cap_share(case))
        settings["max_time_s"] = max(sampling_s, 1e-6)
        settings["min_time_s"] = min(self._floor_s(), settings["max_time_s"])
        # the shortest round still takes its share of the samples, however long a call is
        settings["min_samples"] = self._samples_per_round()
        return settings
