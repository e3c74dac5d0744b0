"""Role processes started exactly as ``compose.yaml`` runs them, and what tests read of them.

``Cluster.start("scp", "scp-1", dicom_port=...)`` runs ``python -m processors.cli
--log-format json scp --config FILE --kafka ADDR`` with its ``DICOM_ADAPTER_*`` overrides
(adapter id, HTTP port, DICOM port). Used by the scale-out, chaos and load suites.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from streams.broker.base import _die_with_parent  # roles die with a killed test run
from tests.helpers.waiting import free_port

REPO = Path(__file__).resolve().parents[2]
NS = "dicom_adapter_"


@dataclass
class Role:
    """One running role process: its name, HTTP port, DICOM port and log file."""

    name: str
    role: str
    proc: asyncio.subprocess.Process
    http_port: int
    log: Path
    dicom_port: int = 0
    sent: list[str] = field(default_factory=list)  # SOP UIDs this SCP received
    expected_dead: bool = False  # killed on purpose by the test

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    def alive(self) -> None:
        assert self.running, f"{self.name} died:\n{self.log.read_text()[-3000:]}"


class Cluster:
    """Starts role processes exactly as compose.yaml runs them."""

    def __init__(
        self,
        bootstrap: str,
        config: Path,
        logs: Path,
        env: Mapping[str, str] | None = None,
        log_level: str = "INFO",
    ) -> None:
        self.bootstrap = bootstrap
        self.config = config
        self.logs = logs
        self.env = dict(env or {})
        self.log_level = log_level
        self.roles: list[Role] = []

    async def start(
        self,
        role: str,
        name: str,
        *,
        dicom_port: int = 0,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        config: Path | None = None,
    ) -> Role:
        http_port = free_port()
        full = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_ADAPTER")}
        full.update(self.env)
        full.update(env or {})
        full["DICOM_ADAPTER_ADAPTER_ID"] = name
        full["DICOM_ADAPTER_HTTP__PORT"] = str(http_port)
        if dicom_port:
            full["DICOM_ADAPTER_SCP__PORT"] = str(dicom_port)
        log = self.logs / f"{name}.log"
        argv = ["--log-level", self.log_level, "--log-format", "json", role]
        argv += ["--config", str(config or self.config), *args]
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "processors.cli", *argv, "--kafka", self.bootstrap,
                cwd=REPO, env=full, stdout=asyncio.subprocess.DEVNULL, stderr=out,
                preexec_fn=_die_with_parent(),  # prctl only, no locks
            )  # fmt: skip
        started = Role(name, role, proc, http_port, log, dicom_port)
        self.roles.append(started)
        return started

    async def kill(self, role: Role) -> None:
        """SIGKILL ``role`` (on purpose) and reap it."""
        role.expected_dead = True
        if role.running:
            role.proc.send_signal(signal.SIGKILL)
        await role.proc.wait()

    def alive(self) -> None:
        """Fail when a role the test did not kill has died."""
        for role in self.roles:
            if not role.expected_dead:
                role.alive()

    def current(self) -> list[Role]:
        """Roles not killed on purpose (the live set)."""
        return [r for r in self.roles if not r.expected_dead]

    async def terminate(self, timeout_s: float = 60.0) -> dict[str, int]:
        """SIGTERM every live role and wait; returns ``{name: exit code}``."""
        live = [r for r in self.roles if r.running]
        for role in live:
            role.proc.send_signal(signal.SIGTERM)
        codes = {}
        for role in live:
            codes[role.name] = await asyncio.wait_for(role.proc.wait(), timeout_s)
        return codes

    async def kill_all(self) -> None:
        for role in self.roles:
            if role.running:
                role.proc.kill()
                await role.proc.wait()


async def scrape(url: str) -> dict[str, float]:
    """``/metrics`` as ``{sample name: value summed over every label set}``."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(f"{url}/metrics")
    assert response.status_code == 200
    totals: dict[str, float] = collections.defaultdict(float)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            totals[sample.name] += sample.value
    return dict(totals)


async def poll(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float = 30) -> None:
    """Poll ``check`` until true (a readiness poll with a deadline)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not reached in {timeout_s} s")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


__all__ = ["NS", "REPO", "Cluster", "Role", "poll", "rss_bytes", "scrape"]
