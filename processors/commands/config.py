"""``dicom-adapter config check FILE`` — validate a config file (DESIGN.md §3.1).

Problems go to stderr, one line each prefixed ``config:``, and the exit code is 2; a
valid file prints a short summary to stdout (warnings to stderr as ``warning:``) and
exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

from processors.aetitle.settings import NESTED_IN_PATIENT, AeTitleSettings, format_tag
from processors.commands.buscheck import bus_lines, read_bus
from processors.commands.kafka_args import kafka_address
from processors.config_check import CheckedConfig, check_config
from streams.config import ENV_PREFIX, KAFKA_ENV, AdapterConfig, DicomDestination, mask_url
from streams.config.exposure import exposures, refusals
from streams.errors import BrokerError, ConfigError, UsageError
from streams.kafka import KafkaConnection, rekeyed_topic


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
    check.add_argument(
        "--kafka",
        metavar="HOST:PORT",
        nargs="?",
        const="",
        help=(
            "also ask the bus (at HOST:PORT, default the config's Kafka) which AE titles have "
            "instances and whether a processor serves each"
        ),
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
    refused = refusals(checked.config)
    if refused:
        for problem in refused:
            print(f"config: {problem}", file=sys.stderr)
        return ConfigError(refused).exit_code
    for line in summary(checked, args.file):
        print(line)
    for warning in _warnings(checked):
        print(f"warning: {warning}", file=sys.stderr)
    if args.kafka is not None:
        return _check_bus(checked.config, args.kafka)
    return 0


def _check_bus(config: AdapterConfig, address: str) -> int:
    try:
        bootstrap = kafka_address(config, address)
    except UsageError as exc:
        raise UsageError(f"config check --kafka: {exc}") from None
    kafka = KafkaConnection.of(config.kafka.model_copy(update={"bootstrap_servers": bootstrap}))
    try:
        view = asyncio.run(read_bus(kafka, config.kafka.topic_prefix))
    except (KafkaError, BrokerError) as exc:
        raise BrokerError(
            f"config check --kafka: cannot read the bus at {bootstrap}: {exc}"
        ) from None
    lines = bus_lines(view, tuple(ae.ae_title for ae in config.scp.ae_titles))
    for line in lines["bus"]:
        print(f"bus: {line}")
    for warning in lines["warning"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _hours(hours: float | None) -> str:
    return "never" if hours is None else f"{hours:g} h"


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
    listeners = [f"{scp.host}:{scp.port}"] if scp.port is not None else []
    if scp.tls is not None:
        listeners.append(
            f"TLS {scp.host}:{scp.tls.port} (client certificates {scp.tls.verify_clients})"
        )
    yield (f"scp: {', '.join(listeners)} (max {scp.max_associations} associations; {senders})")
    submitter = config.submitter
    target = mask_url(submitter.url or "") if submitter.kind == "http" else config.kafka.jobs_topic
    yield (
        f"submitter: {submitter.kind} -> {target} (max {submitter.max_attempts} attempts; "
        f"payloads kept {_hours(submitter.payload_retention_hours)}, orphan files removed "
        f"after {_hours(submitter.orphan_grace_hours)})"
    )
    yield _http(config)
    yield from _export(config)
    for exposure in exposures(config):
        yield f"open: {exposure}"
    for entry in scp.ae_titles:
        settings = checked.settings.get(entry.ae_title)
        if settings is None:
            cls = checked.processors.get(entry.ae_title)
            where = f" ({cls.__module__}.{cls.__qualname__})" if cls is not None else ""
            yield f"AE title {entry.ae_title}: processor {entry.processor}{where}"
            continue
        yield from _aetitle(entry.ae_title, entry.processor, settings, config.kafka.topic_prefix)


def _aetitle(
    ae_title: str, processor: str, settings: AeTitleSettings, prefix: str
) -> Iterator[str]:
    keyword = f" {settings.group_by_keyword}" if settings.group_by_keyword else ""
    yield (
        f"AE title {ae_title}: processor {processor}, groupBy {format_tag(settings.group_by)}"
        f"{keyword}, priority {settings.priority}, timeout {settings.timeout_s} s"
    )
    if settings.group_by not in NESTED_IN_PATIENT:
        yield (f"  groups span patients: repartitioned through {rekeyed_topic(prefix, ae_title)}")
    for name, pipeline_id in settings.pipelines:
        yield f"  pipeline {name}: {pipeline_id}"


def _export(config: AdapterConfig) -> Iterator[str]:
    export = config.export
    if not export.destinations:
        yield "export: no destinations (export.destinations is empty; requests are refused)"
        return
    yield (
        f"export: {len(export.destinations)} destination(s), max {export.max_attempts} "
        f"attempts, batches of {export.batch_size}"
    )
    for d in export.destinations:
        if isinstance(d, DicomDestination):
            yield (
                f"  destination {d.name}: C-STORE to {d.ae_title}@{d.host}:{d.port} "
                f"as {config.calling_ae(d)}"
            )
        else:
            yield f"  destination {d.name}: STOW-RS to {mask_url(d.url)} (auth {d.auth.kind})"


def _kafka(config: AdapterConfig) -> str:
    kafka = config.kafka
    broker = kafka.bootstrap_servers or "embedded broker (kafka.bootstrap_servers not set)"
    security = kafka.security
    login = f", {security.sasl_mechanism} as {security.username}" if security.username else ""
    retention = kafka.retention
    return (
        f"{broker} ({security.protocol}{login}); topics {kafka.instances_topic}, "
        f"{kafka.jobs_topic}; {kafka.partitions} partitions, replication "
        f"{kafka.replication_factor}; retention instances {_hours(retention.instances_hours)}, "
        f"jobs {_hours(retention.jobs_hours)}"
    )


def _http(config: AdapterConfig) -> str:
    http = config.http
    if not http.port:
        return "http: disabled"
    scheme = "https" if http.tls is not None else "http"
    ways = [f"{len(http.auth.tokens)} token(s)"] if http.auth.tokens else []
    if http.tls is not None and http.tls.verify_clients != "none":
        ways.append("client certificates")
    auth = " or ".join(ways) if ways else "no credentials: the API refuses every call"
    return f"http: {scheme}://{http.host}:{http.port} (API: {auth})"


def _warnings(checked: CheckedConfig) -> Iterator[str]:
    yield from checked.warnings
    if not checked.config.scp.ae_titles:
        yield (
            "scp.ae_titles is empty: the SCP will reject every association (called AE title "
            "not recognized); add at least one AE title"
        )
