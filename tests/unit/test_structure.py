"""The shape of the code base (issue 12): packages without import cycles, a runtime that
knows no processor implementation, small modules, and small public APIs.

Read from the source with ``ast`` (no imports are executed), so a violation names the
file and the import that causes it.
"""

from __future__ import annotations

import ast
import collections
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("streams", "processors")
MAX_LINES = 400
#: Processor implementations: what the generic runtime must never import.
IMPLEMENTATIONS = ("processors.aetitle", "processors.cache")


def modules() -> dict[str, Path]:
    """``dotted name -> file`` of every module under streams/ and processors/."""
    found: dict[str, Path] = {}
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(path: Path, module: str) -> Iterator[str]:
    """Every project module ``path`` imports, at any depth (absolute and relative)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def project_imports() -> dict[str, set[str]]:
    """``module -> project modules it imports`` (names that are not modules dropped)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        graph[module] = {name for name in imports(path, module) if name in known} - {module}
    return graph


def package_of(module: str) -> str:
    """The package a module belongs to: ``streams.kafka.source`` -> ``streams.kafka``;
    a top-level module of a root (``processors.base``) is a package of its own."""
    parts = module.split(".")
    return ".".join(parts[:2])


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return out


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_packages() -> None:
    edges: dict[str, set[str]] = {}
    for module, imported in project_imports().items():
        mine = package_of(module)
        edges.setdefault(mine, set()).update(
            package_of(name) for name in imported if package_of(name) != mine
        )
    assert cycles(edges) == [], "packages import each other in a cycle"


def test_streams_never_imports_processors() -> None:
    offenders = {
        module: sorted(n for n in imported if n.startswith("processors"))
        for module, imported in project_imports().items()
        if module.startswith("streams") and any(n.startswith("processors") for n in imported)
    }
    assert offenders == {}, f"streams/ must not import processors/: {offenders}"


def test_the_runtime_imports_no_processor_implementation() -> None:
    graph = project_imports()
    runtime = [m for m in graph if m.startswith("processors.runtime")]
    assert runtime, "no processors.runtime modules found"
    reached: set[str] = set()
    todo = list(runtime)
    while todo:  # everything the runtime imports, transitively
        module = todo.pop()
        for name in graph[module]:
            if name not in reached:
                reached.add(name)
                todo.append(name)
    bad = sorted(m for m in reached if m.startswith(IMPLEMENTATIONS))
    assert bad == [], f"the runtime reaches processor implementations: {bad}"


def test_modules_stay_small() -> None:
    big = {
        str(path.relative_to(REPO)): n
        for path in modules().values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert big == {}, f"modules over {MAX_LINES} lines: {big}"


def declared_all(path: Path) -> list[str]:
    """The names in a module's ``__all__`` (empty without one)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return [ast.literal_eval(e) for e in getattr(node.value, "elts", [])]
    return []


def test_every_public_name_of_a_package_has_a_caller_outside_it() -> None:
    """A package's ``__all__`` lists what its users call: each name is used by code
    outside the package (another package, the tests or the benchmarks)."""
    texts = {
        path: path.read_text(encoding="utf-8")
        for top in (*ROOTS, "tests", "bench")
        for path in (REPO / top).rglob("*.py")
    }
    unused: dict[str, list[str]] = {}
    for init in sorted(p for root in ROOTS for p in (REPO / root).rglob("__init__.py")):
        folder = init.parent
        for name in declared_all(init):
            word = re.compile(rf"\b{re.escape(name)}\b")
            outside = (t for p, t in texts.items() if folder not in p.parents)
            if not any(word.search(text) for text in outside):
                unused.setdefault(str(folder.relative_to(REPO)), []).append(name)
    assert unused == {}, f"public names nobody outside their package uses: {unused}"


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by basename (no packages under tests/): two files
    with one name stop the whole run at collection (it happened: test_replay.py)."""
    tests = Path(__file__).resolve().parents[1]
    names = collections.Counter(p.name for p in tests.rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []
