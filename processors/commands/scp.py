"""``dicom-adapter scp`` — run the DICOM SCP role alone (scale-out role, DESIGN.md §3.1).

Receives C-STORE/C-ECHO on ``scp.host:scp.port`` until SIGINT/SIGTERM, stores each
instance under ``storage`` and publishes ``instance.received`` to ``<prefix>.instances``
(creating the topics first). While Kafka is unreachable instances are still accepted:
their events wait in ``<storage>/.outbox`` and are published when the broker is back.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from processors.commands.kafka_args import add_kafka_arguments, load_role_settings, resolve_kafka
from processors.roles import scp_role, serve


def register(subparsers: Any) -> None:
    """Add ``scp`` to the CLI."""
    parser = subparsers.add_parser(
        "scp",
        help="run the DICOM receiver (C-STORE SCP) until Ctrl-C",
        description=(
            "Receive DICOM instances over C-STORE, store them under the storage folder and "
            "publish an instance.received event for each (acknowledged only once durable). "
            "Runs until SIGINT or SIGTERM."
        ),
    )
    add_kafka_arguments(parser, role=True)
    parser.set_defaults(handler=run_scp)


def run_scp(args: argparse.Namespace) -> int:
    """Handler of ``scp``; returns the exit code."""
    config = resolve_kafka(args, load_role_settings(args, processors=False))
    return asyncio.run(serve(config, {"scp": scp_role}))
