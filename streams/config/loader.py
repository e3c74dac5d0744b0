"""Build the :class:`AdapterConfig` from a YAML/JSON file and ``DICOM_ADAPTER_*`` variables.

Precedence, highest first (DESIGN.md §3.2):

1. ``DICOM_ADAPTER_<SECTION>__<KEY>`` environment variables (``__`` nests; values are
   read as YAML scalars, so ``60`` is a number and ``true`` a boolean);
2. the config file (``path``, else ``$DICOM_ADAPTER_CONFIG``, else none: all defaults);
3. ``KAFKA_BOOTSTRAP_SERVERS`` for ``kafka.bootstrap_servers`` when neither sets it;
4. the defaults of the models.

Every problem is collected and raised at once as one :class:`ConfigError`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from streams.config.models import AdapterConfig
from streams.config.problems import Loc, allowed_keys, format_loc, format_validation_error, show
from streams.config.yamlio import load_yaml, parse_scalar
from streams.errors import ConfigError

ENV_PREFIX = "DICOM_ADAPTER_"
CONFIG_PATH_ENV = "DICOM_ADAPTER_CONFIG"
KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"
_EXAMPLE_ENV = "DICOM_ADAPTER_SCP__PORT"


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """The merged raw data (file + environment) before validation.

    ``origins`` maps key paths set from the environment to the variable that set them;
    ``problems`` holds what was already wrong while reading (duplicate keys, bad
    overrides); :func:`build_config` reports them together with validation problems.
    """

    data: dict[str, Any]
    path: Path | None = None
    origins: Mapping[Loc, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def load_config(
    path: str | Path | None = None, env: Mapping[str, str] = os.environ
) -> AdapterConfig:
    """Read, merge and validate the configuration; raises :class:`ConfigError` listing
    every problem, one line each (key path, AE title where relevant, value, fix).

    Job processor settings (``processorSettings``) are only checked for shape here; the
    processors validate their own keys (``processors.config_check``).
    """
    return build_config(read_source(path, env))


def read_source(
    path: str | Path | None = None, env: Mapping[str, str] = os.environ
) -> ConfigSource:
    """Read the file (if any) and apply environment overrides, without validating."""
    chosen = path if path is not None else (env.get(CONFIG_PATH_ENV) or None)
    file = Path(chosen) if chosen is not None else None
    problems: list[str] = []
    data: dict[str, Any] = {}
    if file is not None:
        data, duplicates = _read_file(file)
        problems.extend(f"config file {file}: {d}" for d in duplicates)
    origins: dict[Loc, str] = {}
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name != CONFIG_PATH_ENV:
            problem = _override(data, name, env[name], origins)
            if problem:
                problems.append(problem)
    _kafka_fallback(data, env, origins)
    return ConfigSource(data=data, path=file, origins=origins, problems=tuple(problems))


def build_config(source: ConfigSource) -> AdapterConfig:
    """Validate merged data; raises :class:`ConfigError` with every problem."""
    problems = list(source.problems)
    try:
        config = AdapterConfig.model_validate(source.data)
    except ValidationError as exc:
        problems.extend(
            format_validation_error(exc, source.data, model=AdapterConfig, origins=source.origins)
        )
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def _read_file(path: Path) -> tuple[dict[str, Any], list[str]]:
    where = f"config file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{where}: not found; check the path"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{where}: is a directory; give the path of a YAML file"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{where}: is not UTF-8 text (byte {exc.start}); save it as UTF-8 YAML or JSON"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"{where}: cannot be read ({exc.strerror}); check it"]) from None
    try:
        data, duplicates = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{where}: {_yaml_problem(exc)}"]) from None
    if data is None:
        # Nothing but blanks or comments: most likely a file truncated or not yet
        # written, and the defaults have no AE titles, so the SCP would refuse everyone.
        raise ConfigError(
            [
                f"{where}: is empty; write the settings in it (see docs/configuration.md), "
                "or give no config file to run with the defaults"
            ]
        )
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"{where}: the top level is {show(data)}, not a mapping; start with keys "
                "such as 'scp:' and 'kafka:'"
            ]
        )
    return data, duplicates


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or "syntax error"
        return (
            f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}; "
            "fix the syntax there (JSON is accepted too)"
        )
    return f"not valid YAML ({str(exc).splitlines()[0]}); fix the syntax"


def _override(data: dict[str, Any], name: str, raw: str, origins: dict[Loc, str]) -> str | None:
    """Apply one ``DICOM_ADAPTER_A__B__C`` variable; returns a problem line or None."""
    segments = name[len(ENV_PREFIX) :].split("__")
    if not all(segments):
        return (
            f"environment variable {name}: empty key between '__' separators; "
            f"use e.g. {_EXAMPLE_ENV}"
        )
    value = parse_scalar(raw)
    node: Any = data
    loc: list[str | int] = []
    for i, seg in enumerate(segments):
        key: str | int
        if isinstance(node, dict):
            key = _match_key(node, seg, tuple(loc))
        elif isinstance(node, list):
            if not seg.isdigit():
                return (
                    f"environment variable {name}: {format_loc(loc)} is a list; "
                    f"select an entry by index, e.g. {ENV_PREFIX}SCP__AE_TITLES__0__PROCESSOR"
                )
            key = int(seg)
            if key >= len(node):
                return (
                    f"environment variable {name}: {format_loc(loc)} has {_entries(len(node))}"
                    f", so there is no index {key}; overrides can only change entries the "
                    "config file defines"
                )
        else:
            return (
                f"environment variable {name}: {format_loc(loc)} is {show(node)}, "
                f"not a mapping, so it has no key {seg!r}; check the name"
            )
        loc.append(key)
        if i == len(segments) - 1:
            node[key] = value
            origins[tuple(loc)] = name
            return None
        child = node[key] if isinstance(key, int) else node.get(key)
        if child is None:
            child = {}
            node[key] = child
        node = child
    return None  # pragma: no cover - the loop always returns on its last segment


def _entries(count: int) -> str:
    return "1 entry" if count == 1 else f"{count} entries"


def _match_key(node: Mapping[str, Any], segment: str, loc: Loc) -> str:
    """The config key an upper-case variable segment means: an existing key or a
    model field of any case, else the segment in lower case."""
    wanted = segment.lower()
    for key in node:
        if isinstance(key, str) and key.lower() == wanted:
            return key
    for key in allowed_keys(AdapterConfig, loc):
        if key.lower() == wanted:
            return key
    return wanted


def _kafka_fallback(data: dict[str, Any], env: Mapping[str, str], origins: dict[Loc, str]) -> None:
    servers = env.get(KAFKA_ENV, "").strip()
    if not servers:
        return
    kafka = data.get("kafka")
    if kafka is None:
        kafka = data["kafka"] = {}
    if isinstance(kafka, dict) and kafka.get("bootstrap_servers") is None:
        kafka["bootstrap_servers"] = servers
        origins[("kafka", "bootstrap_servers")] = KAFKA_ENV
