"""The variant registry: names -> module factories, with the metadata a sweep needs."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

ALL_DEVICES = ("cpu", "cuda")  # the devices the suite can time
ALL_DTYPES = ("float32", "float16", "bfloat16")


class UnknownVariantError(KeyError):
    """Raised for a variant name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class VariantInfo:
    """What the registry knows of one variant."""

    name: str
    factory: Callable[..., nn.Module]
    paper: str = ""
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # option name -> default value
    option_help: dict[str, str] = field(default_factory=dict)  # option name -> what it does
    devices: tuple[str, ...] = ALL_DEVICES
    dtypes: tuple[str, ...] = ALL_DTYPES
    backward: bool = True
    # readies what the variant builds on first use (compiled kernels) for a device type, so a
    # sweep can pay for it once before its first round instead of inside it
    prepare: Callable[[str], None] | None = None


_REGISTRY: dict[str, VariantInfo] = {}


def _options_of(factory: Callable[..., nn.Module]) -> dict[str, Any]:
    """Keyword options of a factory whose first parameter is the channel count."""
    params = list(inspect.signature(factory).parameters.values())
    if not params:
        raise TypeError(f"{factory!r} must take the channel count as its first parameter")
    options = {}
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        options[p.name] = None if p.default is p.empty else p.default
    return options


def register(
    name: str,
    *,
    paper: str = "",
    description: str = "",
    devices: tuple[str, ...] = ALL_DEVICES,
    dtypes: tuple[str, ...] = ALL_DTYPES,
    backward: bool = True,
    option_help: dict[str, str] | None = None,
    replace: bool = False,
    prepare: Callable[[str], None] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a module class (or factory) taking `channels` first, options after."""

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and not replace:
            raise ValueError(
                f"variant {name!r} is already registered; pass replace=True to override"
            )
        unknown_dtypes = set(dtypes) - set(ALL_DTYPES)
        if unknown_dtypes:
            raise ValueError(
                f"dtypes {sorted(unknown_dtypes)} unknown; allowed: {list(ALL_DTYPES)}"
            )
        # the docstring's first paragraph, however many lines it takes
        doc_line = " ".join((inspect.getdoc(factory) or "").split("\n\n", 1)[0].split())
        _REGISTRY[name] = VariantInfo(
            name=name,
            factory=factory,
            paper=paper,
            description=description or doc_line,
            options=_options_of(factory),
            option_help=dict(option_help or {}),
            devices=tuple(devices),
            dtypes=tuple(dtypes),
            backward=backward,
            prepare=prepare,
        )
        return factory

    return decorate


def unregister(name: str) -> None:
    """Remove a variant (mostly for tests and plugins that re-register)."""
    info(name)
    del _REGISTRY[name]


def available() -> list[str]:
    """Sorted names of every registered variant."""
    return sorted(_REGISTRY)


def info(name: str) -> VariantInfo:
    """The registry's record for `name`; UnknownVariantError (a KeyError) if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownVariantError(
            f"unknown attention variant {name!r}; known variants: {', '.join(available())}"
        ) from None


def validate(name: str, channels: int, **options: Any) -> VariantInfo:
    """Check a name, channel count and option names without building anything."""
    variant = info(name)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"{name}: channels={channels!r} is invalid; allowed: a positive integer")
    unknown = sorted(set(options) - set(variant.options))
    if unknown:
        allowed = ", ".join(variant.options) or "none"
        raise ValueError(
            f"{name}: unknown option(s) {', '.join(unknown)}; allowed options: {allowed}"
        )
    return variant


def create(name: str, channels: int, **options: Any) -> nn.Module:
    """Build variant `name` for `channels` channels; output shape equals input shape."""
    return validate(name, channels, **options).factory(channels, **options)
