"""Readiness: a broker is up when a metadata request answers, not when a port opens."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka.errors import KafkaError

from streams.errors import BrokerError
from streams.kafka.clients import Connection, connection

log = logging.getLogger(__name__)

_POLL_S = 0.2
_PROBE_TIMEOUT_S = 5.0


async def describe_cluster(
    kafka: Connection, timeout_s: float = _PROBE_TIMEOUT_S
) -> dict[str, Any]:
    """One metadata round trip: ``{"brokers": [...], "cluster_id": ..., "controller_id": ...}``.

    ``kafka`` is a bare ``host:port`` (plaintext) or a connection with its security
    options. Raises :class:`aiokafka.errors.KafkaError`, :class:`OSError` or
    :class:`TimeoutError` when the broker does not answer.
    """
    admin = connection(kafka).admin(
        client_id="dicom-adapter-probe", request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            cluster: dict[str, Any] = await admin.describe_cluster()
            return cluster
    finally:
        await admin.close()


async def _connectable(kafka: Connection) -> None:
    host, _, port = str(kafka).split(",", maxsplit=1)[0].rpartition(":")
    async with asyncio.timeout(_PROBE_TIMEOUT_S):
        _, writer = await asyncio.open_connection(host, int(port))
    writer.close()
    await writer.wait_closed()


async def wait_until_serving(
    kafka: Connection,
    *,
    died: Callable[[], str | None],
    timeout_s: float,
    what: str,
) -> dict[str, Any]:
    """Poll metadata until the broker lists at least one broker; return the cluster info.

    ``died`` returns an error message once the broker process has exited (checked before
    every probe), which is raised as :class:`BrokerError` at once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last_error = "no answer yet"
    while True:
        message = died()
        if message is not None:
            raise BrokerError(message)
        try:
            # A plain connect first keeps aiokafka from logging refused connections at ERROR.
            await _connectable(kafka)
            cluster = await describe_cluster(kafka)
        except (KafkaError, OSError, TimeoutError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            if cluster.get("brokers"):
                return cluster
            last_error = "metadata lists no brokers yet"
        if loop.time() >= deadline:
            raise BrokerError(
                f"{what} did not serve metadata at {kafka} within {timeout_s:.0f} s "
                f"(last probe: {last_error})"
            )
        log.debug("waiting for %s at %s: %s", what, kafka, last_error)
        await asyncio.sleep(_POLL_S)
