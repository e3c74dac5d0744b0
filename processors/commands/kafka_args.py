"""Shared ``--kafka`` / ``--config`` handling for commands that talk to Kafka.

The Kafka address comes from ``--kafka``, else the config's ``kafka.bootstrap_servers``
(which the loader fills from ``KAFKA_BOOTSTRAP_SERVERS`` when the file does not set
it); with none of them the command stops with a one-line usage error (exit 2).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

from streams.config import KAFKA_ENV, AdapterConfig, load_config
from streams.errors import UsageError


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--kafka HOST:PORT`` and ``--config FILE`` to ``parser``."""
    parser.add_argument(
        "--kafka",
        metavar="HOST:PORT",
        help=(
            f"Kafka bootstrap servers (default: config kafka.bootstrap_servers, then ${KAFKA_ENV})"
        ),
    )
    parser.add_argument(
        "--config", metavar="FILE", type=Path, help="adapter config file (YAML or JSON)"
    )


def load_settings(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> AdapterConfig:
    """The validated config named by ``--config`` (or ``$DICOM_ADAPTER_CONFIG``/defaults)."""
    return load_config(args.config, os.environ if env is None else env)


def resolve_bootstrap(args: argparse.Namespace, config: AdapterConfig) -> str:
    """The Kafka address to use, or :class:`UsageError` (exit 2) naming the three ways."""
    address: str | None = args.kafka or config.kafka.bootstrap_servers
    if not address:
        raise UsageError(
            "no Kafka address: pass --kafka HOST:PORT, set kafka.bootstrap_servers in the "
            f"config, or set {KAFKA_ENV}"
        )
    return address
