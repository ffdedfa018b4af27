"""mkdocs hooks: the reference pages generated from the code, and the example run's charts.

- ``<!-- cli -->`` in a page becomes every `bench` subcommand's ``--help``, from the argparse
  parsers themselves (`bench.cli.build_parser`);
- ``<!-- spec -->`` becomes a table of the sweep spec's fields, from its JSON Schema
  (`bench.sweep.spec.json_schema`, what ``python -m bench schema`` prints);
- the committed example run's charts (`results/example/plots/*.png`) are published under
  ``assets/example/plots/``, so the tutorials show the same files the README does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PLOTS = ROOT / "results" / "example" / "plots"


def on_files(files, config):
    for png in sorted(EXAMPLE_PLOTS.glob("*_full.png")):
        files.append(
            File.generated(config, f"assets/example/plots/{png.name}", abs_src_path=str(png))
        )
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- cli -->" in markdown:
        markdown = markdown.replace("<!-- cli -->", cli_reference())
    if "<!-- spec -->" in markdown:
        markdown = markdown.replace("<!-- spec -->", spec_reference())
    return markdown


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_reference() -> str:
    """Each subcommand's help, as argparse prints it, under a heading of its own."""
    from bench.cli import build_parser

    parser = build_parser()
    parser.prog = "python -m bench"
    parts = ["```text", parser.format_help().rstrip(), "```", ""]
    for name, sub in _subparsers(parser).items():
        sub.prog = f"python -m bench {name}"
        parts += [f"## `bench {name}`", "", "```text", sub.format_help().rstrip(), "```", ""]
        for inner, leaf in _subparsers(sub).items():
            leaf.prog = f"python -m bench {name} {inner}"
            parts += [f"### `bench {name} {inner}`", "", "```text", leaf.format_help().rstrip(),
                      "```", ""]  # fmt: skip
    return "\n".join(parts)


def _type_of(field: dict) -> str:
    if "type" in field:
        kind = field["type"]
        if kind == "array" and isinstance(field.get("items"), dict):
            return f"list of {_type_of(field['items'])}"
        return kind
    if "$ref" in field:
        return field["$ref"].rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in field:
            return " or ".join(_type_of(option) for option in field[key])
    if "enum" in field:
        return " / ".join(repr(v) for v in field["enum"])
    if "const" in field:
        return repr(field["const"])
    return "any"


def _table(properties: dict) -> list[str]:
    rows = ["| field | type | default | what it is |", "|---|---|---|---|"]
    for name, field in properties.items():
        default = f"`{field['default']!r}`" if "default" in field else "required"
        text = " ".join(str(field.get("description", "")).split()).replace("|", "\\|")
        kind = _type_of(field).replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | {default} | {text} |")
    return rows


def spec_reference() -> str:
    """The spec's fields and each nested model's, from the JSON Schema."""
    from bench.sweep.spec import json_schema

    schema = json_schema()
    parts = ["## The sweep", "", *_table(schema.get("properties", {})), ""]
    for name, model in (schema.get("$defs") or {}).items():
        if "properties" in model:
            parts += [f"## `{name}`", "", " ".join(model.get("description", "").split()), "",
                      *_table(model["properties"]), ""]  # fmt: skip
    return "\n".join(parts)
