"""Readiness: a broker is up when a metadata request answers, not when a port opens."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams.errors import BrokerError

log = logging.getLogger(__name__)

_POLL_S = 0.2
_PROBE_TIMEOUT_S = 5.0


async def describe_cluster(
    bootstrap_servers: str, timeout_s: float = _PROBE_TIMEOUT_S
) -> dict[str, Any]:
    """One metadata round trip: ``{"brokers": [...], "cluster_id": ..., "controller_id": ...}``.

    Raises :class:`aiokafka.errors.KafkaError`, :class:`OSError` or
    :class:`TimeoutError` when the broker does not answer.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=int(timeout_s * 1000),
        client_id="dicom-adapter-probe",
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            cluster: dict[str, Any] = await admin.describe_cluster()
            return cluster
    finally:
        await admin.close()


async def _connectable(bootstrap_servers: str) -> None:
    host, _, port = bootstrap_servers.split(",", maxsplit=1)[0].rpartition(":")
    async with asyncio.timeout(_PROBE_TIMEOUT_S):
        _, writer = await asyncio.open_connection(host, int(port))
    writer.close()
    await writer.wait_closed()


async def wait_until_serving(
    bootstrap_servers: str,
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
            await _connectable(bootstrap_servers)
            cluster = await describe_cluster(bootstrap_servers)
        except (KafkaError, OSError, TimeoutError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            if cluster.get("brokers"):
                return cluster
            last_error = "metadata lists no brokers yet"
        if loop.time() >= deadline:
            raise BrokerError(
                f"{what} did not serve metadata at {bootstrap_servers} within {timeout_s:.0f} s "
                f"(last probe: {last_error})"
            )
        log.debug("waiting for %s at %s: %s", what, bootstrap_servers, last_error)
        await asyncio.sleep(_POLL_S)
