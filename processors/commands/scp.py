"""``dicom-adapter scp`` — run the DICOM SCP role alone (scale-out role, DESIGN.md §3.1).

Receives C-STORE/C-ECHO on ``scp.host:scp.port`` until SIGINT/SIGTERM, stores each
instance under ``storage`` and publishes ``instance.received`` to ``<prefix>.instances``
(creating the topics first). While Kafka is unreachable instances are still accepted:
their events wait in ``<storage>/.outbox`` and are published when the broker is back.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from processors.commands.kafka_args import add_kafka_arguments, load_settings, resolve_bootstrap
from processors.registry import resolve_processor
from streams.config import AdapterConfig
from streams.scp import ScpService

log = logging.getLogger(__name__)


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
    add_kafka_arguments(parser)
    parser.set_defaults(handler=run_scp)


def required_tags(config: AdapterConfig) -> dict[str, tuple[str, ...]]:
    """Extra tags each AE title's processor wants in ``instance.received.tags``."""
    tags: dict[str, tuple[str, ...]] = {}
    for ae in config.scp.ae_titles:
        cls: Any = resolve_processor(ae.processor)
        tags[ae.ae_title] = tuple(cls.required_tags(ae.ae_title, ae.processor_settings))
    return tags


def run_scp(args: argparse.Namespace) -> int:
    """Handler of ``scp``; returns the exit code."""
    config = load_settings(args)
    bootstrap = resolve_bootstrap(args, config)
    return asyncio.run(_main(config, bootstrap))


async def _main(config: AdapterConfig, bootstrap: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        service = ScpService(config, ae_tags=required_tags(config), bootstrap_servers=bootstrap)
        async with service:
            log.info(
                "scp role ready: DICOM on %s:%d, AE titles %s, events to %s",
                config.scp.host,
                service.port,
                ", ".join(ae.ae_title for ae in config.scp.ae_titles) or "(none)",
                bootstrap,
            )
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("scp role stopped")
    return 0
