"""Option checks shared by the variants: each failure names the option and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def check_int(
    variant: str,
    option: str,
    value: Any,
    *,
    minimum: int = 1,
    maximum: int | None = None,
    maximum_reason: str = "",
    odd: bool = False,
) -> int:
    """Return `value` if it is an int in [minimum, maximum] (and odd if asked), else ValueError."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    ok = ok and (maximum is None or value <= maximum) and (not odd or value % 2 == 1)
    if not ok:
        allowed = f"{'an odd' if odd else 'an'} integer >= {minimum}"
        if maximum is not None:
            allowed += f" and <= {maximum}" + (f" ({maximum_reason})" if maximum_reason else "")
        raise ValueError(f"{variant}: {option}={value!r} is invalid; allowed: {allowed}")
    return value


def check_positive_number(variant: str, option: str, value: Any) -> float:
    """Return `value` if it is a real number > 0, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{variant}: {option}={value!r} is invalid; allowed: a number > 0")
    return float(value)


def check_choice(variant: str, option: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return `value` if it is one of `choices`, else ValueError listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(
            f"{variant}: {option}={value!r} is invalid; allowed: {', '.join(map(repr, choices))}"
        )
    return value


class ChannelsUnsupported(ValueError):
    """The options are fine, but this channel count is not one the block can split as asked.

    A sweep records such a case as skipped (as it does an unsupported dtype or device), unless
    no channel count of the sweep fits, which is a spec error."""


def check_groups(variant: str, groups: Any, channels: int, per_group: int = 1) -> int:
    """`groups` must be a positive int and `groups * per_group` must divide `channels`."""
    check_int(variant, "groups", groups)
    if channels % (groups * per_group):
        split = f"{groups} groups" + (f" x {per_group} halves" if per_group > 1 else "")
        raise ChannelsUnsupported(
            f"{variant}: channels={channels} cannot be split into {split}; allowed: channels "
            f"divisible by {groups * per_group} (or fewer groups)"
        )
    return groups
