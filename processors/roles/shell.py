"""The process shell: runs one or more roles in one process (DESIGN.md §2, §3.1).

Every role command (``scp``, ``process``, ``submit``) and ``run`` (all of them) go
through :func:`serve`, so each process gets the same shell: signal handling (SIGINT and
SIGTERM stop it cleanly), one HTTP port with ``/healthz``, ``/readyz`` and
``/metrics``, readiness that stays 503 until every role says it has started, the
adapter's topics created once for all roles, and a one-line error with exit code 1
when a role fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from fastapi import FastAPI

from processors.http import (
    ApiAuth,
    Readiness,
    ReadyFlag,
    create_app,
    open_http_server,
    storage_writable,
)
from processors.logs import set_static_context
from processors.roles.retention import topic_needs_ms
from streams.config import AdapterConfig
from streams.config.exposure import exposures, refusals
from streams.errors import AdapterError, ConfigError
from streams.kafka import KafkaConnection, ensure_adapter_topics
from streams.metrics import set_process_info

log = logging.getLogger(__name__)


class Topics:
    """The adapter's topics, created (or found) once per process for every role.

    A failed attempt is not remembered: the SCP asks again after a broker outage.
    """

    def __init__(self, config: AdapterConfig, kafka: KafkaConnection) -> None:
        self._config = config
        self._kafka = kafka
        self._counts: dict[str, int] | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, timeout_s: float = 30.0) -> dict[str, int]:
        """``{topic: actual partition count}``; raises ``BrokerError`` if not reachable."""
        async with self._lock:
            if self._counts is None:
                self._counts = await ensure_adapter_topics(
                    self._kafka,
                    self._config.kafka,
                    needs_ms=topic_needs_ms(self._config),
                    timeout_s=timeout_s,
                )
            return dict(self._counts)


def report_exposures(config: AdapterConfig) -> None:
    """One line saying what is open: a WARNING in lab mode (``security.insecure``)."""
    found = exposures(config)
    if config.security.insecure:
        log.warning(
            "INSECURE, lab mode (security.insecure) -- open: %s", "; ".join(map(str, found))
        )
    elif found:
        log.info("security: open: %s", " | ".join(e.message for e in found))


@dataclass(frozen=True, slots=True)
class RoleContext:
    """What a role gets from the shell.

    A role runs until ``stop`` is set, registers any readiness checks of its own on
    ``readiness`` *before* calling ``started.set()``, may mount routes on ``app``, and
    raises :class:`AdapterError` to stop the process with a one-line error. ``kafka``
    is the connection of ``config.kafka``; ``topics()`` creates the adapter's topics.
    """

    config: AdapterConfig
    kafka: KafkaConnection
    topics: Topics
    stop: asyncio.Event
    readiness: Readiness
    started: ReadyFlag
    app: FastAPI = field(repr=False)


Role = Callable[[RoleContext], Awaitable[None]]


async def serve(config: AdapterConfig, roles: Mapping[str, Role]) -> int:
    """Run ``roles`` concurrently until SIGINT/SIGTERM or until one of them fails.

    Returns the process exit code: 0 after a clean stop, 1 when a role failed (its
    error is logged as one line; the other roles are stopped cleanly first).
    """
    label = "+".join(roles)
    problems = refusals(config)
    if problems:
        raise ConfigError(problems)
    set_process_info(config.adapter_id, label)
    set_static_context(adapter_id=config.adapter_id, role=label)
    kafka = KafkaConnection.of(config.kafka)
    await kafka.check_credentials()  # a refused login is the one line the user sees
    report_exposures(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    readiness = Readiness()
    readiness.add("storage writable", storage_writable(config.storage))
    app = create_app(readiness, auth=ApiAuth.of(config))
    topics = Topics(config, kafka)
    contexts = {
        name: RoleContext(
            config=config,
            kafka=kafka,
            topics=topics,
            stop=stop,
            readiness=readiness,
            started=readiness.flag(f"{name} started", "starting"),
            app=app,
        )
        for name in roles
    }
    failures: list[str] = []

    async def guarded(name: str, role: Role) -> None:
        try:
            await role(contexts[name])
        except AdapterError as exc:
            failures.append(f"{name}: {exc}")
            stop.set()
        except Exception:
            log.exception("%s role crashed", name)
            failures.append(f"{name}: crashed (see the log above)")
            stop.set()
        else:
            if not stop.is_set():
                failures.append(f"{name}: stopped unexpectedly")
                stop.set()

    try:
        async with open_http_server(config.http, readiness, app=app) as server:
            if server is not None:
                log.info("http: /healthz /readyz /metrics on %s", server.url)
            tasks = [asyncio.create_task(guarded(n, r), name=n) for n, r in roles.items()]
            await stop.wait()
            # Roles see ``stop`` and wind down on their own (flush, commit what is safe).
            _done, pending = await asyncio.wait(tasks, timeout=30)
            for task in pending:
                log.warning("%s role did not stop within 30 s; cancelling it", task.get_name())
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    for failure in failures:
        log.error("%s", failure)
    log.info("%s stopped", label)
    return 1 if failures else 0
