"""Find a job processor class from the ``processor`` name of an AE title.

Three forms, as Clara's ``processor`` type string but Pythonic (DESIGN.md §3.2):

* a built-in name: ``aetitle`` (the default AE Title Job Processor) or ``cache`` (the
  cache processor with its REST API, :mod:`processors.cache`);
* ``package.module:Class`` — imported directly;
* any other name — an entry point in the group ``dicom_adapter.processors`` declared by
  an installed package (``[project.entry-points."dicom_adapter.processors"]``).

Only the lookup lives here; checking that the class is a proper job processor is left to
the processor base class.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points

from streams.errors import ConfigError

ENTRY_POINT_GROUP = "dicom_adapter.processors"
AETITLE = "aetitle"
# Built-in names -> "module:Class" of their implementation.
BUILTIN_PROCESSORS: Mapping[str, str] = {
    AETITLE: "processors.aetitle:AeTitleJobProcessor",
    "cache": "processors.cache:CacheProcessor",
}
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_FORMS = "use 'aetitle', 'cache', 'package.module:Class' or the name of an installed entry point"


def resolve_processor(name: str) -> type:
    """The class a ``processor`` name stands for; raises :class:`ConfigError` (one line)
    saying what could not be found and how to fix it."""
    if name in BUILTIN_PROCESSORS:
        return _import(name, BUILTIN_PROCESSORS[name])
    if ":" in name:
        return _import(name, name)
    return _entry_point(name)


def _import(name: str, target: str) -> type:
    module_name, _, qualname = target.partition(":")
    if not _DOTTED.fullmatch(module_name) or not _DOTTED.fullmatch(qualname):
        raise ConfigError(
            [f"{name!r} is not of the form 'package.module:Class'; e.g. mypkg.grouping:ByOrder"]
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(
                [
                    f"{name!r}: no module named {module_name!r}; install the package that "
                    "provides it in this environment or fix the name"
                ]
            ) from None
        raise ConfigError(
            [f"{name!r}: importing {module_name!r} failed: {exc}; install what it needs"]
        ) from None
    except Exception as exc:  # user code: any error while importing it is a config problem
        raise ConfigError(
            [f"{name!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"]
        ) from None
    found: object = module
    for part in qualname.split("."):
        if not hasattr(found, part):
            raise ConfigError(
                [f"{name!r}: module {module_name!r} has no {qualname!r}; check the class name"]
            )
        found = getattr(found, part)
    return _require_class(name, found)


def _entry_point(name: str) -> type:
    available = entry_points(group=ENTRY_POINT_GROUP)
    matches: list[EntryPoint] = [ep for ep in available if ep.name == name]
    if not matches:
        known = sorted({*BUILTIN_PROCESSORS, *(ep.name for ep in available)})
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            [
                f"unknown processor {name!r}{hint}: not built in and no installed package "
                f"declares it in entry point group {ENTRY_POINT_GROUP}; {_FORMS}"
            ]
        )
    targets = sorted({ep.value for ep in matches})
    if len(targets) > 1:
        raise ConfigError(
            [
                f"processor {name!r} is declared by several entry points ({', '.join(targets)}); "
                "use 'package.module:Class' to choose one"
            ]
        )
    try:
        loaded: object = matches[0].load()
    except Exception as exc:  # user code, as above
        raise ConfigError(
            [
                f"processor {name!r}: loading entry point {matches[0].value!r} failed: "
                f"{type(exc).__name__}: {exc}"
            ]
        ) from None
    return _require_class(name, loaded)


def _require_class(name: str, found: object) -> type:
    if not isinstance(found, type):
        raise ConfigError(
            [
                f"{name!r} names an object of type {type(found).__name__}, not a class; "
                "point it at the processor class"
            ]
        )
    return found
