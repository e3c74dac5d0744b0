"""Validate a whole configuration, job processor settings included, in one pass.

:func:`streams.config.load_config` checks the shape of the config but leaves each AE
title's ``processorSettings`` alone (``streams`` never imports ``processors``); this
module adds the processors' own checks, so ``config check`` and the roles that start
processors report every problem of a file at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processors.aetitle.settings import AeTitleSettings, parse_settings
from processors.base import JobProcessor
from processors.registry import AETITLE, resolve_processor
from streams.config import (
    DEFAULT_PROCESSOR,
    AdapterConfig,
    ConfigSource,
    build_config,
    read_source,
)
from streams.errors import ConfigError


@dataclass(frozen=True, slots=True)
class CheckedConfig:
    """A valid configuration with each AE title's processor resolved.

    ``settings`` holds the parsed settings of AE titles using the built-in ``aetitle``
    processor; ``processors`` the classes of AE titles using another processor.
    Both are keyed by AE title. ``warnings`` are one line each (e.g. a timeout raised
    to the minimum).
    """

    config: AdapterConfig
    settings: Mapping[str, AeTitleSettings] = field(default_factory=dict)
    processors: Mapping[str, type] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclass(slots=True)
class ProcessorFindings:
    """What :func:`check_processors` found: parsed settings, classes, problems, warnings."""

    settings: dict[str, AeTitleSettings] = field(default_factory=dict)
    processors: dict[str, type] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def build_collecting(source: ConfigSource) -> tuple[AdapterConfig | None, list[str]]:
    """The config built from ``source`` (``None`` when it cannot be) and its problems,
    so callers can add their own before raising one :class:`ConfigError` with all."""
    try:
        return build_config(source), []
    except ConfigError as exc:
        return None, list(exc.problems)


def check_config(
    path: str | Path | None = None, env: Mapping[str, str] = os.environ
) -> CheckedConfig:
    """Load ``path`` (plus environment overrides) and check every AE title's processor
    and settings; raises :class:`ConfigError` listing every problem of the file."""
    source = read_source(path, env)
    config, problems = build_collecting(source)
    findings = check_processors(source.data)
    problems.extend(findings.problems)
    if problems or config is None:
        raise ConfigError(problems)
    return CheckedConfig(
        config=config,
        settings=findings.settings,
        processors=findings.processors,
        warnings=tuple(findings.warnings),
    )


def check_processors(data: Mapping[str, Any]) -> ProcessorFindings:
    """Check the processor and settings of every well-formed ``scp.ae_titles`` entry of
    raw config data (malformed entries are reported by the config validation)."""
    found = ProcessorFindings()
    scp = data.get("scp")
    entries = scp.get("ae_titles") if isinstance(scp, Mapping) else None
    if not isinstance(entries, list):
        return found
    for index, entry in enumerate(entries):
        if isinstance(entry, Mapping):
            _check_entry(f"scp.ae_titles[{index}]", entry, found)
    return found


def _check_entry(where: str, entry: Mapping[str, Any], found: ProcessorFindings) -> None:
    title = entry.get("ae_title")
    ae_title = title if isinstance(title, str) else "?"
    processor = entry.get("processor", DEFAULT_PROCESSOR)
    if not isinstance(processor, str) or not processor:
        return  # reported by the config validation
    if processor == AETITLE:
        raw = entry.get("processorSettings", {})
        if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
            return  # reported by the config validation
        try:
            settings, warnings = parse_settings(ae_title, raw, where=where)
        except ConfigError as exc:
            found.problems.extend(exc.problems)
            return
        found.settings[ae_title] = settings
        found.warnings.extend(warnings)
        return
    try:
        cls = resolve_processor(processor)
    except ConfigError as exc:
        found.problems.extend(f"{where} ({ae_title}): processor: {p}" for p in exc.problems)
        return
    if not issubclass(cls, JobProcessor):
        found.problems.append(
            f"{where} ({ae_title}): processor: {processor!r} is {cls.__module__}."
            f"{cls.__qualname__}, not a subclass of processors.base.JobProcessor; "
            "point it at a job processor class"
        )
        return
    found.processors[ae_title] = cls
    raw = entry.get("processorSettings", {})
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
        return  # reported by the config validation
    try:
        found.warnings.extend(cls.validate_settings(ae_title, raw, where=where))
    except ConfigError as exc:
        found.problems.extend(exc.problems)
    except Exception as exc:  # user code: a crash while checking is a config problem too
        found.problems.append(
            f"{where} ({ae_title}): processorSettings: {cls.__qualname__}.validate_settings "
            f"failed: {type(exc).__name__}: {exc}"
        )
