"""``dicom-adapter config check FILE`` — validate a config file (DESIGN.md §3.1).

Problems go to stderr, one line each prefixed ``config:``, and the exit code is 2; a
valid file prints a short summary to stdout (warnings to stderr as ``warning:``) and
exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from processors.aetitle.settings import AeTitleSettings, format_tag
from processors.config_check import CheckedConfig, check_config
from streams.config import ENV_PREFIX, KAFKA_ENV, AdapterConfig, mask_url
from streams.errors import ConfigError


def register(subparsers: Any) -> None:
    """Add ``config check`` to the CLI."""
    parser = subparsers.add_parser(
        "config",
        help="check a configuration file",
        description="Work with adapter configuration files (YAML or JSON).",
    )
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION")
    actions.required = True
    check = actions.add_parser(
        "check",
        help="validate a config file and print every problem (exit 2) or a summary (exit 0)",
        description=(
            "Validate FILE as the adapter would load it, environment overrides "
            f"({ENV_PREFIX}*, {KAFKA_ENV}) included, and check every AE title's "
            "processor and processorSettings."
        ),
    )
    check.add_argument("file", metavar="FILE", type=Path, help="the YAML or JSON config file")
    check.add_argument(
        "--no-env",
        action="store_true",
        help=f"ignore {ENV_PREFIX}* and {KAFKA_ENV} variables: check the file alone",
    )
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Handler of ``config check``; returns the exit code."""
    env: Mapping[str, str] = {} if args.no_env else os.environ
    try:
        checked = check_config(args.file, env)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        return exc.exit_code
    for line in summary(checked, args.file):
        print(line)
    for warning in _warnings(checked):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def summary(checked: CheckedConfig, path: Path) -> Iterator[str]:
    """Human summary of a valid configuration, one line per item."""
    config = checked.config
    yield f"config OK: {path}"
    yield f"adapter: {config.adapter_id}"
    yield f"storage: {config.storage} ({config.storage.absolute()})"
    yield f"kafka: {_kafka(config)}"
    scp = config.scp
    senders = (
        f"only {len(scp.sources)} listed source(s) accepted"
        if scp.reject_unknown_sources
        else "any calling AE accepted"
    )
    yield f"scp: {scp.host}:{scp.port} (max {scp.max_associations} associations; {senders})"
    submitter = config.submitter
    target = mask_url(submitter.url or "") if submitter.kind == "http" else config.kafka.jobs_topic
    yield f"submitter: {submitter.kind} -> {target} (max {submitter.max_attempts} attempts)"
    yield f"http: {config.http.host}:{config.http.port}" if config.http.port else "http: disabled"
    for entry in scp.ae_titles:
        settings = checked.settings.get(entry.ae_title)
        if settings is None:
            cls = checked.processors.get(entry.ae_title)
            where = f" ({cls.__module__}.{cls.__qualname__})" if cls is not None else ""
            yield f"AE title {entry.ae_title}: processor {entry.processor}{where}"
            continue
        yield from _aetitle(entry.ae_title, entry.processor, settings)


def _aetitle(ae_title: str, processor: str, settings: AeTitleSettings) -> Iterator[str]:
    keyword = f" {settings.group_by_keyword}" if settings.group_by_keyword else ""
    yield (
        f"AE title {ae_title}: processor {processor}, groupBy {format_tag(settings.group_by)}"
        f"{keyword}, priority {settings.priority}, timeout {settings.timeout_s} s"
    )
    for name, pipeline_id in settings.pipelines:
        yield f"  pipeline {name}: {pipeline_id}"


def _kafka(config: AdapterConfig) -> str:
    kafka = config.kafka
    broker = kafka.bootstrap_servers or "embedded broker (kafka.bootstrap_servers not set)"
    return (
        f"{broker}; topics {kafka.instances_topic}, {kafka.jobs_topic}; "
        f"{kafka.partitions} partitions, replication {kafka.replication_factor}"
    )


def _warnings(checked: CheckedConfig) -> Iterator[str]:
    yield from checked.warnings
    if not checked.config.scp.ae_titles:
        yield (
            "scp.ae_titles is empty: the SCP will reject every association (called AE title "
            "not recognized); add at least one AE title"
        )
