"""The harness's wings import only wings below them (measurement < sweep < report < gate < history), the
"never" rules of docs/architecture.md hold, and no module imports itself round a circle."""

import ast
import sys
from pathlib import Path

import pytest

import bench

PACKAGE = Path(bench.__file__).parent
WINGS = ["measurement", "sweep", "report", "gate", "history"]


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imported_bench_modules(path: Path) -> set[str]:
    """Absolute names of the `bench` modules a file imports, relative imports resolved."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                # `from . import plots` names a module in its alias, `from .spec import Case` not
                submodule = f"{target}.{alias.name}"
                names.add(submodule if is_module(submodule) else target)
    return {name for name in names if name == "bench" or name.startswith("bench.")}


def wing_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in WINGS else None


def layout_violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        source_wing = wing_of(source)
        for target in imported_bench_modules(path):
            if target.startswith("bench.cli") or target == "bench.__main__":
                if source not in ("bench.__main__",):
                    problems.append(f"{source} imports {target}: nothing imports the CLI")
                continue
            if source_wing is None:
                continue  # the package's public face and the CLI may import any wing
            target_wing = wing_of(target)
            if target_wing is None:
                if target in ("bench", "bench.__init__"):
                    problems.append(f"{source} imports the package's public face")
                continue
            if WINGS.index(target_wing) > WINGS.index(source_wing):
                problems.append(f"{source} ({source_wing}) imports {target} ({target_wing})")
    return problems


def test_every_wing_imports_only_the_wings_below_it():
    assert layout_violations() == []


# (importer, imported): what a module of the first may never import
NEVER = [
    ("bench.measurement", "bench.sweep"),
    ("bench.measurement", "bench.report"),
    ("bench.measurement", "bench.gate"),
    ("bench.report", "bench.measurement"),  # a report reads run directories, never measures
    # the gate decides from run directories; what it shares with the report (statistics over
    # many cases) lives outside both wings, in bench.statistics
    ("bench.gate", "bench.report"),
    ("attention_variants", "bench"),
    # a slowed validation run loads the variants it slows, not the gate that scores them
    ("bench.gate.slowed", "bench.gate.validate"),
    ("bench.gate.slowed", "bench.gate.compare"),
]


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def import_graph(root: Path | None = None) -> dict[str, set[str]]:
    """Module -> the bench and attention_variants modules it imports (at any depth in the
    file, so an import inside a function counts: it still runs)."""
    root = root or PACKAGE.parent
    graph = {}
    for package in ("bench", "attention_variants"):
        for path in sorted((root / package).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            graph[module] = imported_modules(path, root)
    return graph


def imported_modules(path: Path, root: Path) -> set[str]:
    module = ".".join(path.relative_to(root).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                path_of = root.joinpath(*submodule.split("."))
                is_mod = path_of.with_suffix(".py").exists() or (path_of / "__init__.py").exists()
                names.add(submodule if is_mod else target)
    return {
        n.removesuffix(".__init__")
        for n in names
        if _within(n, "bench") or _within(n, "attention_variants")
    }


def never_violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{source} imports {target}"
        for source, targets in graph.items()
        for target in targets
        for importer, imported in NEVER
        if _within(source, importer) and _within(target, imported)
    )


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan's algorithm); a package
    naming itself (`from . import name` of its own attribute) is no circle."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue  # a package's name, or a module outside the graph
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_never_rules_hold():
    assert never_violations(import_graph()) == []


def test_no_module_imports_itself_round_a_circle():
    # packages' __init__ re-exports are edges too; `bench/__init__` loads its names lazily
    assert circles(import_graph()) == []


def programs_in(package: Path) -> list[str]:
    """Modules that are programs: a `__main__` guard or an argparse parser of their own."""
    found = []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text()
        if '__name__ == "__main__"' in text or "import argparse" in text:
            found.append(str(path.relative_to(package.parent.parent)))
    return found


def test_the_measurement_wing_holds_no_programs():
    # its self-checks are printed by `bench check`, in bench/programs.py
    assert programs_in(PACKAGE / "measurement") == []


def test_the_program_check_sees_a_main_guard(tmp_path):
    wing = tmp_path / "bench" / "measurement"
    wing.mkdir(parents=True)
    (wing / "quiet.py").write_text("x = 1\n")
    (wing / "loud.py").write_text('if __name__ == "__main__":\n    print(1)\n')
    assert programs_in(wing) == ["bench/measurement/loud.py"]


def test_the_checks_see_a_report_reaching_into_measurement_and_a_circle(tmp_path):
    for package, files in {
        "bench": {"__init__.py": "", "report/__init__.py": "",
                  "report/tables.py": "from ..measurement.quality import FLAGS\n",
                  "measurement/__init__.py": "", "measurement/quality.py": "",
                  "sweep/__init__.py": "", "sweep/a.py": "from . import b\n",
                  "sweep/b.py": "from .a import x\n"},
        "attention_variants": {"__init__.py": "import bench\n"},
    }.items():  # fmt: skip
        for name, text in files.items():
            path = tmp_path / package / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    graph = import_graph(tmp_path)
    assert never_violations(graph) == [
        "attention_variants imports bench",
        "bench.report.tables imports bench.measurement.quality",
    ]
    assert circles(graph) == [["bench.sweep.a", "bench.sweep.b"]]


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    # a copy of the package with one measurement module importing the sweep wing
    fake = tmp_path / "bench"
    (fake / "measurement").mkdir(parents=True)
    (fake / "sweep").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "cli.py").write_text("")
    (fake / "measurement" / "__init__.py").write_text("")
    (fake / "measurement" / "timing.py").write_text("from ..sweep.spec import Case\n")
    (fake / "sweep" / "__init__.py").write_text("")
    (fake / "sweep" / "spec.py").write_text(
        "from ..measurement import timing\nfrom bench import cli\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    problems = layout_violations()
    assert problems == [
        "bench.measurement.timing (measurement) imports bench.sweep.spec (sweep)",
        "bench.sweep.spec imports bench.cli: nothing imports the CLI",
    ]


@pytest.mark.parametrize(
    "name, module",
    [
        ("measure", "bench.measurement.timing"),
        ("count", "bench.measurement.counting"),
        ("peak_memory", "bench.measurement.memory"),
        ("capture", "bench.measurement.environment"),
        ("compare", "bench.gate.compare"),
        ("build_report", "bench.report.builder"),
    ],
)
def test_the_public_face_is_the_wings_functions(name, module):
    from importlib import import_module

    attribute = "report" if name == "build_report" else name
    assert getattr(bench, name) is getattr(import_module(module), attribute)
    assert name in bench.__all__


def test_an_unknown_public_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        bench.nope  # noqa: B018
