"""Deterministic shards of a sweep: the same partition on every machine, from the spec alone.

The unit of a partition is a group: the variant cases of one shape and setting together with the
references they are read against (identity, conv3x3, copy), so every shard is a complete run
directory on its own; a network case is a group of its own. Groups are balanced by an estimate
of their cost from FLOPs and bytes, counted on the meta device before anything runs (no memory,
no compute), and dealt out largest first to the shard with the least work so far.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import torch

from ..measurement.case import TimingBudget
from ..measurement.counting import count
from .cases import SETTING_FIELDS, SHAPE_FIELDS, Case, build_module

# a notional device for balancing only: what matters is the ratio between cases, not seconds
NOTIONAL_FLOPS_PER_S = 5e10
NOTIONAL_BYTES_PER_S = 1e10


@dataclass(frozen=True)
class Shard:
    """The `index`-th (1-based) of `count` shards."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not match or not 1 <= int(match[1]) <= int(match[2]):
            raise ValueError(f"--shard {text!r} is invalid; allowed: K/N with 1 <= K <= N")
        return cls(int(match[1]), int(match[2]))

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def name(self) -> str:
        """A directory name for the shard: ``shard-2-of-3``."""
        return f"shard-{self.index}-of-{self.count}"


def group_key(case: Case) -> tuple:
    """Cases that must run in the same shard: a shape and setting's variants and references."""
    if case.role == "network":
        return case.key
    return tuple(getattr(case, name) for name in (*SHAPE_FIELDS, *SETTING_FIELDS))


@functools.lru_cache(maxsize=4096)
def _case_seconds(case: Case) -> float:
    """Notional seconds of one call: FLOPs and bytes counted on the meta device."""
    try:
        with torch.device("meta"):
            module = build_module(case)
            x = torch.empty(case.batch, case.channels, case.height, case.width)
        counts = count(module, x, backward=case.mode == "train")
    except Exception:  # skipped at run time (e.g. groups that do not fit), or not countable
        return float(case.batch * case.channels * case.height * case.width) / 1e10
    return counts.flops / NOTIONAL_FLOPS_PER_S + counts.bytes_moved / NOTIONAL_BYTES_PER_S


def estimated_cost(case: Case, budget: TimingBudget) -> float:
    """Notional seconds a case takes: its sampling, within the budget's floor and cap (about a
    hundred calls reach a tight interval), plus the calls of warm-up, counting and memory that
    every round and case makes however slow a call is."""
    call = _case_seconds(case)
    sampling = min(max(budget.min_time_s, 100 * call), budget.max_time_s)
    return sampling + (2 * budget.rounds + 3) * call


def partition(cases: list[Case], count: int, budget: TimingBudget) -> list[list[Case]]:
    """`count` lists of cases, in expansion order within each, balanced by estimated cost."""
    groups: dict[tuple, list[Case]] = {}
    for case in cases:
        groups.setdefault(group_key(case), []).append(case)
    costs = {
        key: sum(estimated_cost(c, budget) for c in members) for key, members in groups.items()
    }
    # largest first; ties broken by the group's first case id, so every machine agrees
    order = sorted(groups, key=lambda key: (-costs[key], groups[key][0].case_id))
    loads = [0.0] * count
    owner: dict[tuple, int] = {}
    for key in order:
        lightest = min(range(count), key=lambda i: (loads[i], i))
        owner[key] = lightest
        loads[lightest] += costs[key]
    shards: list[list[Case]] = [[] for _ in range(count)]
    for case in cases:
        shards[owner[group_key(case)]].append(case)
    return shards


def select(cases: list[Case], shard: Shard, budget: TimingBudget) -> list[Case]:
    """The cases of `shard`."""
    return partition(cases, shard.count, budget)[shard.index - 1]
