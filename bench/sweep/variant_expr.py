"""The variant expression ``name(option=value, ...)``: a small grammar of its own, and labels that
read back exactly (``VariantSpec.parse(v.label) == v`` for every option value).

    expression := NAME [ "(" [ option ("," option)* [","] ] ")" ]
    option     := KEY "=" value
    value      := number | quoted string | word | "(" [ value ("," value)* [","] ] ")"
    word       := true / false (any case) -> bool, none / null -> None, else a string

Numbers are Python's (``8``, ``-3``, ``1e-5``, ``0.25``); a word such as ``naive`` is a string,
so ``eca_mha(attention_impl=naive)`` needs no quotes; tuples hold any of these.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any

NAME = re.compile(r"[A-Za-z_][\w.\-]*")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
WORD = re.compile(r"[A-Za-z_][\w.\-]*")
QUOTED = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""")
KEYWORDS = {"true": True, "false": False, "none": None, "null": None}
Value = Any  # bool | int | float | str | None | tuple of Value


class _Parser:
    def __init__(self, text: str):
        self.text, self.at = text, 0

    def fail(self, what: str) -> ValueError:
        return ValueError(
            f"variant {self.text!r}: {what} at position {self.at}; allowed form: "
            "name(option=value, ...) with numbers, quoted strings, words, true/false, "
            "None and (tuples)"
        )

    def skip(self) -> None:
        while self.at < len(self.text) and self.text[self.at].isspace():
            self.at += 1

    def take(self, pattern: re.Pattern) -> str | None:
        self.skip()
        match = pattern.match(self.text, self.at)
        if not match:
            return None
        self.at = match.end()
        return match.group()

    def peek(self, char: str) -> bool:
        self.skip()
        return self.text.startswith(char, self.at)

    def expect(self, char: str) -> None:
        if not self.peek(char):
            raise self.fail(f"expected {char!r}")
        self.at += 1

    def items(self, item) -> list:
        """Comma-separated `item`s up to a closing parenthesis (a trailing comma is allowed)."""
        found = []
        while not self.peek(")"):
            found.append(item())
            if not self.peek(","):
                break
            self.at += 1
        self.expect(")")
        return found

    def value(self) -> Value:
        if self.peek("("):
            self.at += 1
            return tuple(self.items(self.value))
        quoted = self.take(QUOTED)
        if quoted is not None:
            return ast.literal_eval(quoted)
        number = self.take(NUMBER)
        if number is not None:
            return float(number) if any(c in number for c in ".eE") else int(number)
        word = self.take(WORD)
        if word is not None:
            return KEYWORDS.get(word.lower(), word)
        raise self.fail("expected a value")

    def option(self) -> tuple[str, Value]:
        key = self.take(NAME)
        if key is None:
            raise self.fail("expected an option name")
        self.expect("=")
        return key, self.value()

    def expression(self) -> tuple[str, list[tuple[str, Value]]]:
        name = self.take(NAME)
        if name is None:
            raise self.fail("expected a variant name")
        options = []
        if self.peek("("):
            self.at += 1
            options = self.items(self.option)
        self.skip()
        if self.at != len(self.text):
            raise self.fail("unexpected text")
        return name, options


def label_of(value: Value) -> str:
    """The value as the grammar writes it; parsing it gives the value back."""
    if value is None or isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"option value {value!r}: only finite numbers are allowed")
        return repr(value)
    if isinstance(value, str):
        bare = WORD.fullmatch(value) and value.lower() not in KEYWORDS
        return value if bare else repr(value)
    if isinstance(value, (tuple, list)):
        inner = ", ".join(label_of(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    raise ValueError(f"option value {value!r}: allowed: numbers, strings, booleans, None, tuples")


def _frozen(value: Any) -> Value:
    """Lists (from YAML) become tuples, so options stay hashable and compare as parsed."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


@dataclass(frozen=True)
class VariantSpec:
    """A variant and its options, e.g. ``se(reduction=8)``."""

    name: str
    options: tuple[tuple[str, Value], ...] = ()

    @property
    def options_dict(self) -> dict[str, Value]:
        return dict(self.options)

    @property
    def options_label(self) -> str:
        return ",".join(f"{k}={label_of(v)}" for k, v in self.options)

    @property
    def label(self) -> str:
        return f"{self.name}({self.options_label})" if self.options else self.name

    @classmethod
    def parse(cls, text: Any) -> VariantSpec:
        """From ``"se"``, ``"se(reduction=8, bias=false)"`` or ``{name: se, options: {...}}``."""
        if isinstance(text, dict):
            unknown = set(text) - {"name", "options"}
            if "name" not in text or unknown or not isinstance(text.get("options") or {}, dict):
                raise ValueError(f"variant {text!r}: allowed keys are name and options (a map)")
            options = {str(k): _frozen(v) for k, v in (text.get("options") or {}).items()}
            for value in options.values():
                label_of(value)  # refuses what a label could not write back
            return cls(str(text["name"]), tuple(sorted(options.items())))
        if not isinstance(text, str):
            raise ValueError(f"variant {text!r}: allowed: name(option=value, ...) or a map")
        name, options = _Parser(text).expression()
        keys = [key for key, _ in options]
        if len(set(keys)) != len(keys):
            raise ValueError(
                f"variant {text!r}: an option is given twice; allowed: each option once"
            )
        return cls(name, tuple(sorted(options)))


def split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses and quotes: ``"eca,se(reduction=8,bias=false)"``."""
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote and (not current or current[-1] != "\\") else quote
        elif char in "'\"":
            quote = char
        else:
            depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0 and not quote:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]
