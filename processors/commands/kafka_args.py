"""Shared ``--kafka`` / ``--config`` handling for commands that talk to Kafka.

The Kafka address comes from ``--kafka``, else the config's ``kafka.bootstrap_servers``
(which the loader fills from ``KAFKA_BOOTSTRAP_SERVERS`` when the file does not set
it), else the embedded broker a ``run`` of the same config started: the address it
recorded in ``<storage>/kafka/broker.json``, used only while something listens there,
and said on stderr. With none of them the command stops with a one-line usage error
(exit 2) that names every way to give one. It is resolved once, here, into the config
every role gets.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from processors.config_check import build_collecting, check_config, check_processors
from processors.registry import AETITLE
from streams.broker import is_listening, recorded_address
from streams.config import (
    DEFAULT_PROCESSOR,
    KAFKA_ENV,
    AdapterConfig,
    load_config,
    read_source,
)
from streams.errors import ConfigError, UsageError


def add_kafka_arguments(parser: argparse.ArgumentParser, *, role: bool = False) -> None:
    """Add ``--kafka HOST:PORT`` and ``--config FILE`` to ``parser``; for a ``role``,
    also ``--insecure`` (the lab opt-out, as ``security.insecure: true``)."""
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
    if role:
        parser.add_argument(
            "--insecure",
            action="store_true",
            help=(
                "lab only: start even with plaintext Kafka on the network, no key secret or "
                "an open HTTP API (security.insecure); a WARNING lists what is open"
            ),
        )


def load_settings(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> AdapterConfig:
    """The validated config named by ``--config`` (or ``$DICOM_ADAPTER_CONFIG``/defaults)."""
    return _insecure(args, load_config(args.config, os.environ if env is None else env))


def _insecure(args: argparse.Namespace, config: AdapterConfig) -> AdapterConfig:
    """``config`` with ``security.insecure`` set when ``--insecure`` was given."""
    if not getattr(args, "insecure", False):
        return config
    security = config.security.model_copy(update={"insecure": True})
    return config.model_copy(update={"security": security})


def load_role_settings(
    args: argparse.Namespace, env: Mapping[str, str] | None = None, *, processors: bool
) -> AdapterConfig:
    """:func:`load_settings` for a role, which must not start on a file ``config check``
    rejects: every problem at once, exit 2, before anything listens or connects.

    ``processors``: the role runs the job processors (``run``), so every AE title's
    processor is resolved and checked as ``config check`` does. Otherwise (``scp``,
    ``submit``) the built-in ``aetitle`` processor's settings are checked, and custom
    processors, which such a role never imports, are left alone.
    """
    environ = os.environ if env is None else env
    if processors:
        return _insecure(args, check_config(args.config, environ).config)
    source = read_source(args.config, environ)
    config, problems = build_collecting(source)
    scp = source.data.get("scp")
    entries = scp.get("ae_titles") if isinstance(scp, Mapping) else None
    if isinstance(entries, list):
        # Entries of other processors become None, which the check skips (indexes kept).
        builtin = [e if _uses_aetitle(e) else None for e in entries]
        problems.extend(check_processors({"scp": {"ae_titles": builtin}}).problems)
    if problems or config is None:
        raise ConfigError(problems)
    return _insecure(args, config)


def _uses_aetitle(entry: object) -> bool:
    return isinstance(entry, Mapping) and entry.get("processor", DEFAULT_PROCESSOR) == AETITLE


def resolve_kafka(args: argparse.Namespace, config: AdapterConfig) -> AdapterConfig:
    """``config`` with the Kafka address to use (see :func:`kafka_address`)."""
    return config.with_kafka(kafka_address(config, args.kafka))


def kafka_address(config: AdapterConfig, given: str | None) -> str:
    """``given`` (``--kafka``), else ``kafka.bootstrap_servers``, else the running
    embedded broker of ``config``'s storage folder (said on stderr); else
    :class:`UsageError` (exit 2) naming every way to give one."""
    address = given or config.kafka.bootstrap_servers
    if address:
        return address
    folder = Path(config.storage) / "kafka"
    recorded = recorded_address(folder)
    ways = (
        f"pass --kafka HOST:PORT, set kafka.bootstrap_servers in the config or {KAFKA_ENV}, "
        "or start 'dicom-adapter run' with this config (in another shell) first"
    )
    if recorded is None:
        raise UsageError(f"no Kafka address and no embedded broker in {folder}: {ways}")
    host, _, port = recorded.rpartition(":")
    if not is_listening(host, int(port)):
        raise UsageError(
            f"no Kafka address, and the embedded broker of {folder} (last at {recorded}) "
            f"is not running: {ways}"
        )
    print(
        f"dicom-adapter: using the embedded broker of {folder} at {recorded}",
        file=sys.stderr,
    )
    return recorded
