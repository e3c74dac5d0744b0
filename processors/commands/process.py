"""``dicom-adapter process`` — run the job processors alone (scale-out role, DESIGN.md §3.1).

Consumes ``<prefix>.instances`` until SIGINT/SIGTERM, groups each AE title's instances
with its job processor and writes ``group.closed`` (the jobs ledger) to
``<prefix>.jobs``: every job exactly once across crashes and rebalances. Shutdown
emits no partial group and commits only what is safe.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from processors.commands.kafka_args import add_kafka_arguments, load_settings, resolve_kafka
from processors.config_check import check_processors as check_processor_settings
from processors.roles import process_role_with, serve
from processors.roles.process import check_process_config
from streams.config import AdapterConfig
from streams.errors import ConfigError


def register(subparsers: Any) -> None:
    """Add ``process`` to the CLI."""
    parser = subparsers.add_parser(
        "process",
        help="run the job processors until Ctrl-C",
        description=(
            "Group the instance.received events of every configured AE title with its job "
            "processor and write each closed group and its pipeline jobs to the jobs topic, "
            "exactly once. Runs until SIGINT or SIGTERM."
        ),
    )
    add_kafka_arguments(parser, role=True)
    parser.add_argument(
        "--group-instance-id",
        metavar="ID",
        help=(
            "static consumer-group membership: a restarted process with the same ID takes "
            "its partitions back at once; every running process needs its own ID"
        ),
    )
    parser.set_defaults(handler=run_process)


def check_processors(config: AdapterConfig) -> None:
    """Fail fast (exit 2) on a processor configuration the role could not start with:
    no AE titles, an unknown processor, bad ``processorSettings``."""
    check_process_config(config)
    entries = [
        {
            "ae_title": ae.ae_title,
            "processor": ae.processor,
            "processorSettings": dict(ae.processor_settings),
        }
        for ae in config.scp.ae_titles
    ]
    findings = check_processor_settings({"scp": {"ae_titles": entries}})
    if findings.problems:
        raise ConfigError(findings.problems)


def run_process(args: argparse.Namespace) -> int:
    """Handler of ``process``; returns the exit code."""
    config = resolve_kafka(args, load_settings(args))
    check_processors(config)
    role = process_role_with(group_instance_id=args.group_instance_id or None)
    return asyncio.run(serve(config, {"process": role}))
