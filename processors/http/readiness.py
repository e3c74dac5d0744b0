"""Readiness: named checks that roles register, evaluated on every ``/readyz``.

A check is a function of no arguments returning ``bool`` (or an awaitable of one);
``False`` or an exception means "not ready", and the exception's message is shown in
the ``/readyz`` body. Sync checks run on the event loop and must be instant (read a
flag, look at a client's state); anything that does I/O is an ``async`` check. Each
check gets ``timeout_s`` seconds, so one stuck dependency never hangs the probe.

Register a process's checks before its HTTP server starts: a check registered later
cannot make an already-ready answer wrong in hindsight, but the probe would say
"ready" in between.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Check = Callable[[], bool | Awaitable[bool]]

DEFAULT_CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check: ``ok``, and why not when it failed."""

    name: str
    ok: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    """Every check's result; the process is ready when all passed."""

    results: tuple[CheckResult, ...]

    @property
    def ready(self) -> bool:
        """True when every check passed (also when there are none)."""
        return all(r.ok for r in self.results)

    @property
    def failing(self) -> tuple[str, ...]:
        """Names of the checks that did not pass, in registration order."""
        return tuple(r.name for r in self.results if not r.ok)


class ReadyFlag:
    """A check that is a plain switch, for conditions a callback learns about
    (``partitions assigned`` is set by the rebalance listener, cleared on revocation)."""

    def __init__(self, reason: str = "not yet") -> None:
        self._ok = False
        self._reason = reason

    def set(self) -> None:
        """Mark the condition as met."""
        self._ok = True

    def clear(self, reason: str = "not yet") -> None:
        """Mark the condition as not met, with a short reason for ``/readyz``."""
        self._ok = False
        self._reason = reason

    @property
    def is_set(self) -> bool:
        """Whether the condition is met."""
        return self._ok

    def __call__(self) -> bool:
        if not self._ok:
            raise NotReadyError(self._reason)
        return True


class NotReadyError(Exception):
    """Raised by a check to say why it is not ready (the message goes to ``/readyz``)."""


class Readiness:
    """The named readiness checks of one process (names are unique)."""

    def __init__(self, timeout_s: float = DEFAULT_CHECK_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        """Register ``check`` under ``name``; a name can be registered once."""
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} is already registered")
        self._checks[name] = check

    def flag(self, name: str, reason: str = "not yet") -> ReadyFlag:
        """Register and return a :class:`ReadyFlag` named ``name`` (initially not set)."""
        flag = ReadyFlag(reason)
        self.add(name, flag)
        return flag

    def remove(self, name: str) -> None:
        """Unregister a check (no error when absent), e.g. when its role stops."""
        self._checks.pop(name, None)

    @property
    def names(self) -> tuple[str, ...]:
        """Registered check names, in registration order."""
        return tuple(self._checks)

    async def evaluate(self) -> ReadinessReport:
        """Run every check concurrently, each bounded by ``timeout_s``."""
        checks = list(self._checks.items())
        results = await asyncio.gather(*(self._run(name, check) for name, check in checks))
        return ReadinessReport(tuple(results))

    async def _run(self, name: str, check: Check) -> CheckResult:
        try:
            async with asyncio.timeout(self.timeout_s):
                outcome = check()
                if inspect.isawaitable(outcome):
                    outcome = await outcome
        except TimeoutError:
            return CheckResult(name, False, f"no answer within {self.timeout_s:g} s")
        except NotReadyError as exc:  # the expected "no": its reason says it all
            return CheckResult(name, False, _one_line(exc))
        except Exception as exc:  # a failing check is an answer, not a crash of /readyz
            log.debug("readiness check %s failed", name, exc_info=True)
            return CheckResult(name, False, _one_line(exc))
        if outcome is True:
            return CheckResult(name, True)
        return CheckResult(name, False, f"check returned {outcome!r}, not True")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
