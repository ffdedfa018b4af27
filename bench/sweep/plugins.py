"""Variants from outside the registry: a module or .py file named in the spec, or an installed
package's entry point under ``attention_variants.plugins``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

ENTRY_POINT_GROUP = "attention_variants.plugins"


def load_plugin(target: str) -> None:
    """Import a module by name, or a .py file by path, so its variants register themselves.

    Raises ImportError naming the target and what went wrong.
    """
    path = Path(target)
    try:
        if target.endswith(".py") or path.is_file():
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {target}")
            digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
            module_name = f"_attention_plugin_{digest}"
            if module_name in sys.modules:  # loaded already: its variants are registered
                return
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(target)
    except Exception as error:
        raise ImportError(
            f"{target!r} failed to import: {type(error).__name__}: {error}"
        ) from error


def load_entry_point_plugins() -> dict[str, str]:
    """Import every installed package's entry points; returns {broken entry point: why}.

    A broken plugin must not block every sweep: its failure is reported, and it only becomes an
    error when a variant the sweep asks for is missing (see `spec.build_spec`).
    """
    broken = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as error:
            package = entry_point.dist.name if entry_point.dist else "an unknown package"
            broken[f"{entry_point.name} ({entry_point.value}, package {package})"] = (
                f"{type(error).__name__}: {error}"
            )
    return broken
