"""Data flows one way: no module under streams/ imports processors (STYLE.md §2)."""

from __future__ import annotations

import ast
from pathlib import Path

STREAMS = Path(__file__).resolve().parents[2] / "streams"


def imports_of_processors(source: str) -> list[str]:
    """Names of ``processors`` modules imported anywhere in ``source`` (any depth)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "processors"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "processors":
                found.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and str(first.value).startswith("processors"):
                found.append(str(first.value))
    return found


def test_the_checker_sees_every_form_of_import() -> None:
    source = (
        "import processors\n"
        "def f():\n"
        "    from processors.cli import main\n"
        "    import importlib; importlib.import_module('processors.app')\n"
        "import processors_like\n"
        "from streams import events\n"
    )
    assert imports_of_processors(source) == ["processors", "processors.cli", "processors.app"]


def test_streams_never_imports_processors() -> None:
    files = sorted(STREAMS.rglob("*.py"))
    assert files, f"no Python files under {STREAMS}"
    offenders = {
        str(path.relative_to(STREAMS.parent)): names
        for path in files
        if (names := imports_of_processors(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, f"streams/ must not import processors/: {offenders}"
