"""``processor:`` names: built-in, ``package.module:Class`` and entry points.

Real modules and a real ``*.dist-info`` entry point are written to a temporary folder
on ``sys.path``; nothing is mocked.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from processors.registry import ENTRY_POINT_GROUP, resolve_processor
from streams.errors import ConfigError

MODULE_SOURCE = """\
class Grouper:
    class Inner:
        pass

def not_a_class():
    pass

VALUE = 3
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A folder on sys.path holding a uniquely named module; removed from sys.modules after."""
    name = f"plugin_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(MODULE_SOURCE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path, name
    for mod in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[mod]


def add_entry_point(folder: Path, ep_name: str, target: str, dist: str = "acme_plugin") -> None:
    info = folder / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{ep_name} = {target}\n")


def problem(name: str) -> str:
    with pytest.raises(ConfigError) as info:
        resolve_processor(name)
    [line] = info.value.problems
    assert "\n" not in line
    return line


def test_module_and_class(plugins: tuple[Path, str]) -> None:
    _, module = plugins
    cls = resolve_processor(f"{module}:Grouper")
    assert cls.__name__ == "Grouper"
    assert resolve_processor(f"{module}:Grouper.Inner").__qualname__ == "Grouper.Inner"


def test_missing_module() -> None:
    line = problem("no_such_pkg_zz.mod:Cls")
    assert "no module named 'no_such_pkg_zz.mod'" in line
    assert "install the package" in line


def test_missing_class(plugins: tuple[Path, str]) -> None:
    _, module = plugins
    line = problem(f"{module}:Nope")
    assert f"module {module!r} has no 'Nope'" in line


def test_not_a_class(plugins: tuple[Path, str]) -> None:
    _, module = plugins
    assert "object of type function, not a class" in problem(f"{module}:not_a_class")
    assert "object of type int, not a class" in problem(f"{module}:VALUE")


def test_module_that_fails_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"broken_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / f"needs_{name}.py").write_text(f"import missing_dep_{name}\nclass C: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    line = problem(f"{name}:C")
    assert "importing" in line and "RuntimeError: boom at import" in line
    line = problem(f"needs_{name}:C")
    assert f"No module named 'missing_dep_{name}'" in line


@pytest.mark.parametrize("name", ["a:", ":B", "a b:C", "a:B-C", "pkg.:C"])
def test_malformed_targets(name: str) -> None:
    assert "is not of the form 'package.module:Class'" in problem(name)


def test_entry_point(plugins: tuple[Path, str]) -> None:
    folder, module = plugins
    add_entry_point(folder, "by-order", f"{module}:Grouper")
    assert resolve_processor("by-order").__name__ == "Grouper"


def test_unknown_entry_point_suggests_close_names(plugins: tuple[Path, str]) -> None:
    folder, module = plugins
    add_entry_point(folder, "by-order", f"{module}:Grouper")
    line = problem("by-ordr")
    assert "unknown processor 'by-ordr' (did you mean 'by-order'?)" in line
    assert ENTRY_POINT_GROUP in line
    assert "'package.module:Class'" in line


def test_entry_point_that_fails_to_load(plugins: tuple[Path, str]) -> None:
    folder, module = plugins
    add_entry_point(folder, "broken", f"{module}:Missing")
    line = problem("broken")
    assert "loading entry point" in line and "Missing" in line


def test_builtin_aetitle_is_looked_up_by_name() -> None:
    # The AE Title Job Processor class is added by a later task; until then the lookup
    # must fail with a clear line rather than a traceback.
    try:
        cls = resolve_processor("aetitle")
    except ConfigError as exc:
        [line] = exc.problems
        assert "'aetitle'" in line
    else:
        assert cls.__name__ == "AeTitleJobProcessor"
