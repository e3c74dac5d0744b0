"""The lifecycle every local broker shares: spawn, wait until it serves, stop.

A broker is a child process owned by this object: started with :meth:`LocalBroker.start`
(or ``async with`` / ``with``), ready only when a metadata request really answers, and
stopped with SIGTERM, then SIGKILL after a timeout. If it dies while starting, the
:class:`~streams.errors.BrokerError` carries the tail of its log.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ctypes
import logging
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from streams.broker.ready import wait_until_serving
from streams.errors import BrokerError
from streams.kafka.clients import Connection
from streams.lifecycle import Service

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``host:port`` can be bound now (a listener elsewhere makes it busy)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def is_listening(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Whether something accepts TCP connections on ``host:port`` now."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` non-empty lines of a log file (for error messages)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) if kept else "(empty log)"


_PROBLEM = re.compile(r"\b(ERROR|FATAL|SEVERE)\b|Exception\b|Error:|panicked")


def log_excerpt(path: Path, limit: int = 6) -> str:
    """What explains a failed start: the first error lines of a log, else its tail.

    A dying broker logs its cause once and then pages of shutdown chatter, so the
    first errors say more than the last lines. Stack frames are left out.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    problems: list[str] = []
    for line in text.splitlines():
        if line[:1].isspace() or line.startswith("Caused by: "):
            continue
        if _PROBLEM.search(line) and line not in problems:
            problems.append(line)
            if len(problems) >= limit:
                break
    return "\n".join(problems) if problems else log_tail(path)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when its parent dies (Linux).

    Keeps a crashed or killed adapter from leaving an orphan JVM holding its port.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


class LocalBroker(Service, abc.ABC):
    """A single-node broker running as a child process on a loopback port.

    Use as ``async with broker:`` (inside a running loop) or ``with broker:`` (no loop
    running in this thread), or call :meth:`start` / :meth:`stop`. Start it from the
    thread that will stop it: on Linux the child is tied to the starting thread.
    """

    #: Short machine name of the broker kind ("kafka", "tansu").
    kind: str = ""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        start_timeout_s: float = 90.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # -- what subclasses provide -------------------------------------------------

    @property
    @abc.abstractmethod
    def version(self) -> str:
        """The broker's version (e.g. ``4.1.1``)."""

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Human name with version, e.g. ``Apache Kafka 4.1.1 (KRaft)``."""

    @property
    @abc.abstractmethod
    def log_path(self) -> Path:
        """File the broker's stdout and stderr go to."""

    @abc.abstractmethod
    def _prepare(self) -> tuple[int, Sequence[str]]:
        """Check prerequisites, write config; return (client port, argv to spawn)."""

    def _after_ready(self, cluster: dict[str, Any]) -> None:
        """Hook run once the broker answered metadata (e.g. to warn)."""

    # -- public surface ----------------------------------------------------------

    @property
    def port(self) -> int:
        """The client (PLAINTEXT) port; known once started."""
        if self._port is None:
            raise BrokerError(f"{self.description} is not started yet; it has no port")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for clients (``bootstrap_servers``)."""
        return f"{self.host}:{self.port}"

    @property
    def connection(self) -> Connection:
        """How clients reach the broker (a bare address, or one with security options)."""
        return self.bootstrap_servers

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the broker (``None`` when not started)."""
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Spawn the broker and return once a metadata request answers.

        Raises :class:`BrokerError` if prerequisites are missing, the process dies while
        starting (with the tail of its log) or it does not serve within the timeout.
        """
        if self.running:
            return
        # Preparing may format storage (a JVM run of a few seconds): keep the loop free.
        port, argv = await asyncio.to_thread(self._prepare)
        self._port = port
        self._spawn(argv)
        try:
            cluster = await wait_until_serving(
                self.connection,
                died=self._death_message,
                timeout_s=self.start_timeout_s,
                what=self.description,
            )
            # A broker that failed to bind may answer nothing itself while another process
            # on the port does: make sure ours is still the one alive.
            message = self._death_message()
            if message is not None:
                raise BrokerError(message)
        except BaseException:
            await self.stop()
            raise
        log.info("%s serving at %s", self.description, self.bootstrap_servers)
        self._after_ready(cluster)

    async def stop(self) -> None:
        """Stop the broker: SIGTERM, wait ``stop_timeout_s``, then SIGKILL. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            if not await self._wait_exit(proc, self.stop_timeout_s):
                log.warning(
                    "%s did not stop within %.0f s of SIGTERM; killing it",
                    self.description,
                    self.stop_timeout_s,
                )
                proc.kill()
                await self._wait_exit(proc, 10.0)
        log.info("%s stopped (exit %s)", self.description, proc.returncode)
        self._reap()

    async def wait(self) -> int:
        """Wait until the broker process exits on its own; return its exit code."""
        proc = self._proc
        if proc is None:
            raise BrokerError(f"{self.description} is not started")
        # A Popen child has no awaitable exit outside asyncio's own subprocess API.
        while proc.poll() is None:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        return proc.returncode

    def __enter__(self) -> Self:
        self._run_sync(self.start)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._run_sync(self.stop)

    def __repr__(self) -> str:
        where = self.bootstrap_servers if self._port is not None else "not started"
        return f"<{type(self).__name__} {self.description} at {where}>"

    # -- internals ---------------------------------------------------------------

    @staticmethod
    def _run_sync(step: Callable[[], Any]) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(step())
            return
        raise BrokerError("use 'async with' (or await start()/stop()) inside a running event loop")

    def _spawn(self, argv: Sequence[str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in _reap
        log.info(
            "starting %s on %s (log: %s)", self.description, self.bootstrap_servers, self.log_path
        )
        try:
            self._proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                # Own session: a terminal's Ctrl-C reaches us, and we stop the broker in order.
                start_new_session=True,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 - prctl only, no locks
            )
        except OSError as exc:
            self._close_log()
            raise BrokerError(f"could not run {argv[0]}: {exc}") from None

    def _death_message(self) -> str | None:
        proc = self._proc
        if proc is None or proc.poll() is None:
            return None
        if self._log_file is not None:
            self._log_file.flush()
        return (
            f"{self.description} exited with code {proc.returncode} while starting; "
            f"from {self.log_path}:\n{log_excerpt(self.log_path)}"
        )

    @staticmethod
    async def _wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while proc.poll() is None:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1)
        self._proc = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
