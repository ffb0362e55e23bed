"""The package's imports point one way, and form no circle.

Every import statement counts, those inside functions too (a lazy import is still a
dependency, and a circle it closes only works until someone moves it to the top).
Importing ``synth.a.b`` also runs ``synth/a/__init__.py``, so a package's ``__init__``
is a dependency of everything imported from it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from conftest import ROOT

# Lower layers never import higher ones. Within a layer, imports go either way as long
# as they form no circle. The review package sits below the runner: a run stops cells
# that reviewers flag and ends by sampling rows for review, while nothing in review
# needs the run loop.
LAYERS: list[tuple[str, ...]] = [
    (
        "synth.errors",
        "synth.records",
        "synth.text",
        "synth.messages",
        "synth.datafiles",
        "synth.serving",
        "synth.agreement",
        "synth.outfiles",
        "synth.memory",
    ),
    ("synth.filters", "synth.prompts", "synth.judge.rubric", "synth.neighbours"),
    ("synth.config", "synth.sim", "synth.scaffold"),
    ("synth.store",),
    ("synth.llm",),
    (
        "synth.generate",
        "synth.plan",
        "synth.quota",
        "synth.seeds",
        "synth.judge",
        "synth.spend",
        "synth.alternatives",
        "synth.check",
    ),
    ("synth.review",),
    ("synth.runner", "synth.filtering", "synth.distributed"),
    (
        "synth.progress",
        "synth.versions",
        "synth.export",
        "synth.pairs",
        "synth.audit",
        "synth.status",
        "synth.show",
        "synth.rows",
        "synth.estimate",
        "synth.report",
        "synth.demo",
    ),
    ("synth.cli", "synth.__main__", "synth"),
]


def module_files(top: Path) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` under ``top`` (a package folder)."""
    out = {}
    for path in sorted(top.rglob("*.py")):
        parts = list(path.relative_to(top.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_edges(modules: dict[str, Path]) -> Iterator[tuple[str, str, int]]:
    """(importer, imported, line) for every import of a module of the package, once
    per statement. A package's ``__init__`` counts where it imports something (the top
    package's own is left out: every module would depend on it)."""
    inert = {
        name
        for name, path in modules.items()
        if path.name == "__init__.py"
        and not any(
            isinstance(n, ast.Import)
            or (isinstance(n, ast.ImportFrom) and n.module != "__future__")
            for n in ast.walk(ast.parse(path.read_text()))
        )
    }
    seen: set[tuple[str, str, int]] = set()
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                parts = target.split(".")
                for i in range(2, len(parts) + 1):
                    ancestor = ".".join(parts[:i])
                    if ancestor not in modules or ancestor == name:
                        continue
                    if name.startswith(ancestor + "."):
                        continue  # a module's own package is imported before it anyway
                    if ancestor in inert and ancestor != target:
                        continue
                    if (edge := (name, ancestor, node.lineno)) not in seen:
                        seen.add(edge)
                        yield edge


def layer_of(module: str) -> int:
    best, layer = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, layer = len(p), i
    assert layer >= 0, f"{module} has no layer: add it to LAYERS"
    return layer


def find_circles(edges: list[tuple[str, str, int]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each as a
    sorted list: any such group holds a circle of imports."""
    graph: dict[str, set[str]] = {}
    for a, b, _ in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def synth_edges() -> list[tuple[str, str, int]]:
    return list(import_edges(module_files(ROOT / "synth")))


def test_no_import_circles():
    assert find_circles(synth_edges()) == []


def test_imports_point_down_the_layers():
    upward = [
        f"{a}:{line} imports {b}" for a, b, line in synth_edges() if layer_of(b) > layer_of(a)
    ]
    assert upward == []


def test_every_module_has_a_layer():
    for name in module_files(ROOT / "synth"):
        layer_of(name)


def test_the_checks_find_a_planted_circle_and_an_upward_import(tmp_path):
    top = tmp_path / "synth"
    (top / "store").mkdir(parents=True)
    (top / "__init__.py").write_text("")
    (top / "store" / "__init__.py").write_text("from synth.store.calls import Calls\n")
    (top / "store" / "calls.py").write_text("def plan():\n    from synth.runner import run\n")
    (top / "runner.py").write_text("from synth.store import Store\n")
    edges = list(import_edges(module_files(top)))
    assert find_circles(edges) == [["synth.runner", "synth.store", "synth.store.calls"]]
    assert ("synth.store.calls", "synth.runner", 2) in edges
    assert layer_of("synth.runner") > layer_of("synth.store.calls")
