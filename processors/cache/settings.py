"""Settings of the cache processor: ``priority`` and optional ``pipeline-<name>`` keys.

The cache processor never closes groups by itself, so the AE Title Job Processor's
``groupBy`` and ``timeout`` do not apply. ``pipeline-<name>: <id>`` keys name pipelines a
``POST /cache/<ae>/jobs`` request may refer to by name (``"pipeline": "lung"``); with
exactly one of them a request may leave the pipeline out. ``priority`` is the default
priority of jobs whose request gives none. Problems are listed all at once, one line
each, naming the AE title, the key and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streams.config import show
from streams.errors import ConfigError
from streams.events import PRIORITIES, Priority

DEFAULT_PRIORITY: Priority = "normal"
PIPELINE_PREFIX = "pipeline-"
KNOWN_KEYS = ("priority",)
_ALLOWED = "allowed: priority and pipeline-<name> keys"
_NOT_HERE = ("groupBy", "timeout")


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """Parsed ``processorSettings`` of a cache AE title."""

    priority: Priority = DEFAULT_PRIORITY
    pipelines: tuple[tuple[str, str], ...] = ()  # (name, pipeline id), config order

    def pipeline_id(self, name: str) -> str | None:
        """The id of the pipeline configured as ``pipeline-<name>``, if any."""
        return dict(self.pipelines).get(name)


def parse_cache_settings(
    ae_title: str, raw: Mapping[str, Any], *, where: str | None = None
) -> tuple[CacheSettings, list[str]]:
    """Parse one AE title's settings; returns ``(settings, warnings)`` or raises
    :class:`ConfigError` listing every problem, e.g. ``scp.ae_titles[1] (CACHE):
    processorSettings.priority: 'fast' is not one of lower, normal, higher, immediate``."""
    ctx = f"{where} ({ae_title})" if where else f"AE title {ae_title}"
    if not isinstance(raw, Mapping):
        raise ConfigError([f"{ctx}: processorSettings: expected a mapping, got {show(raw)}"])
    problems: list[str] = []
    priority = DEFAULT_PRIORITY
    pipelines: dict[str, str] = {}
    for key, value in raw.items():
        where_key = f"{ctx}: processorSettings.{key}"
        if not isinstance(key, str):
            problems.append(f"{ctx}: processorSettings: key {show(key)} is not text; quote it")
        elif key == "priority":
            name = value.strip().lower() if isinstance(value, str) else None
            if name in PRIORITIES:
                priority = next(p for p in PRIORITIES if p == name)
            else:
                problems.append(f"{where_key}: {show(value)} is not one of {', '.join(PRIORITIES)}")
        elif key[: len(PIPELINE_PREFIX)].lower() == PIPELINE_PREFIX:
            problem = _pipeline(key, value, pipelines)
            if problem:
                problems.append(f"{where_key}: {problem}")
        else:
            problems.append(f"{where_key}: {_unknown_key(key)}")
    if problems:
        raise ConfigError(problems)
    return CacheSettings(priority=priority, pipelines=tuple(pipelines.items())), []


def _pipeline(key: str, value: Any, pipelines: dict[str, str]) -> str | None:
    name = key[len(PIPELINE_PREFIX) :]
    if not name.strip():
        return "the pipeline name after 'pipeline-' is empty; use e.g. pipeline-lung"
    if name in pipelines:
        return f"pipeline {name!r} is defined twice; pipeline names must be unique"
    if not isinstance(value, str):
        fix = "quote it" if value is not None else "set it to the pipeline's id"
        return f"pipeline id {show(value)} is not text; {fix}"
    if not value.strip():
        return "the pipeline id is empty; set it to the pipeline's id"
    pipelines[name] = value.strip()
    return None


def _unknown_key(key: str) -> str:
    if key in _NOT_HERE:
        return (
            "does not apply to the cache processor (it never closes groups by itself: "
            f"jobs are composed with POST /cache/<ae>/jobs); remove it — {_ALLOWED}"
        )
    close = difflib.get_close_matches(key, (*KNOWN_KEYS, "pipeline-"), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown setting{hint}; {_ALLOWED}"
