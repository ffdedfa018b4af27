"""Variants from outside the registry: a module or .py file named in the spec, or an installed
package's entry point under ``attention_variants.plugins``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import Any

from ..measurement.environment import files_digest, git_state

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


def plugin_files(target: str) -> list[Path]:
    """The files a plugin's code lives in: the .py file named, or the imported module's file
    (every .py file of its package folder, for a package); [] where it has none."""
    path = Path(target)
    if target.endswith(".py") or path.is_file():
        return [path.resolve()] if path.is_file() else []
    module = sys.modules.get(target) or importlib.import_module(target)
    origin = getattr(module, "__file__", None)
    if origin is None:
        return []
    origin = Path(origin).resolve()
    if origin.name == "__init__.py":
        return sorted(origin.parent.rglob("*.py"))
    return [origin]


def plugin_provenance(target: str) -> dict[str, Any]:
    """What a run records of one plugin, the code under test: the plugin as named, its files,
    the git repository they lie in with its commit and dirty state, and a hash of the files
    (which names the code even outside a repository)."""
    files = plugin_files(target)
    state = git_state(files[0].parent) if files else git_state(Path.cwd())
    return {
        "plugin": target,
        "files": [str(f) for f in files],
        "files_sha256": files_digest(files) if files else None,
        **state,
    }
