"""``dicom-adapter run`` — every role in one process (DESIGN.md §3.1).

SCP, processors, submitter, reclaimer and exporter share one event loop and one HTTP port. With
no Kafka configured it starts an embedded broker and says which: Apache Kafka (KRaft,
log under ``<storage>/kafka`` so it survives restarts) when Java and the jars from
``dicom-adapter broker fetch`` are there, else Tansu from the ``embedded`` extra (memory
only, with a loud warning). Ctrl-C stops everything cleanly, the broker last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from processors.commands.kafka_args import add_kafka_arguments, load_role_settings
from processors.roles import export_role, process_role, scp_role, serve, submit_role
from streams.broker import start_embedded_broker
from streams.config import AdapterConfig

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add ``run`` to the CLI."""
    parser = subparsers.add_parser(
        "run",
        help="run everything in one process (SCP, processors, submitter, exporter)",
        description=(
            "Run the SCP, the job processors, the submitter, the reclaimer and the exporter in "
            "one process. "
            "Without a Kafka address (--kafka, kafka.bootstrap_servers, KAFKA_BOOTSTRAP_SERVERS) "
            "an embedded broker is started with its log under <storage>/kafka."
        ),
    )
    add_kafka_arguments(parser, role=True)
    parser.add_argument(
        "--broker-port",
        type=int,
        default=None,
        metavar="N",
        help="port of the embedded broker (default: a free one, kept across restarts)",
    )
    parser.set_defaults(handler=run_all)


def run_all(args: argparse.Namespace) -> int:
    """Handler of ``run``; returns the exit code."""
    config = load_role_settings(args, processors=True)
    return asyncio.run(_main(config, args.kafka, args.broker_port))


@contextlib.asynccontextmanager
async def _kafka(
    config: AdapterConfig, address: str | None, port: int | None
) -> AsyncIterator[str]:
    """The bootstrap address to use: the configured Kafka, or an embedded broker."""
    if address:
        yield address
        return
    data = Path(config.storage) / "kafka"
    broker = await start_embedded_broker(data, port)
    log.info("embedded broker: %s at %s", broker.description, broker.bootstrap_servers)
    try:
        yield broker.bootstrap_servers
    finally:
        await broker.stop()
        log.info("embedded broker stopped")


async def _main(config: AdapterConfig, kafka: str | None, broker_port: int | None) -> int:
    async with _kafka(config, kafka or config.kafka.bootstrap_servers, broker_port) as bootstrap:
        roles = {
            "scp": scp_role,
            "process": process_role,
            "submit": submit_role(),
            "export": export_role,
        }
        return await serve(config.with_kafka(bootstrap), roles)
