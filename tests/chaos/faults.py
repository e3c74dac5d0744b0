"""The faults of a chaos run, each against real processes and a real file system.

* ``kill_*``: SIGKILL a role at a moment that hurts (an SCP mid-association, a processor
  with open windows, the submitter right after the platform failed a call, so a retry
  is pending), keep it down for the planned time, start it again under the same adapter
  id (the SCP finds its outbox, the processor its static group membership).
* ``pause_broker``: SIGSTOP the Kafka broker process, SIGCONT after the planned time.
* ``disk_full``: allocate a file next to the storage folder so free space falls below
  the SCP's reserve (the run's config puts the reserve a few GiB under the free space at
  start), remove it after the planned time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.plan import Fault
from tests.helpers.cluster import NS, Cluster, Role, scrape
from tests.helpers.dicom import echoscu
from tests.helpers.platform import PlatformServer
from tests.helpers.processor import poll_readyz

#: Longest wait for the "hurting" moment before a kill goes ahead anyway.
AIM_S = 3.0


@dataclass
class Roles:
    """The live role of each slot, replaced when a fault restarts it."""

    scps: list[Role]
    processors: list[Role]
    submitter: Role


@dataclass
class FaultLog:
    """What the faults did, for the invariants and the figures."""

    downtimes: list[tuple[int, float, float]] = field(default_factory=list)  # SCP, down, up
    kills: dict[str, int] = field(default_factory=dict)
    paused_s: float = 0.0
    filled_s: float = 0.0
    aimed: dict[str, bool] = field(default_factory=dict)  # kind -> hit its moment


async def _until(check: Callable[[], Awaitable[bool]], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def answers_echo(role: Role, ae: str) -> bool:
    result = await asyncio.to_thread(echoscu, role.dicom_port, aec=ae, timeout=5)
    return result.returncode == 0


class Faults:
    """Injects the faults of one run into ``cluster``."""

    def __init__(
        self,
        cluster: Cluster,
        roles: Roles,
        *,
        broker_pid: int,
        filler: Path,
        reserve_bytes: int,
        platform: PlatformServer,
        active: list[int],
        echo_ae: str,
    ) -> None:
        self.cluster = cluster
        self.roles = roles
        self.broker_pid = broker_pid
        self.filler = filler
        self.reserve_bytes = reserve_bytes
        self.platform = platform
        self.active = active  # open associations per SCP slot (kept by the senders)
        self.echo_ae = echo_ae
        self.log = FaultLog()
        self._restarts = 0

    async def inject(self, fault: Fault) -> None:
        """Run one fault to its end (the role restarted and ready, the broker resumed)."""
        self.log.kills[fault.kind] = self.log.kills.get(fault.kind, 0) + 1
        if fault.kind == "kill_scp":
            await self._kill_scp(fault)
        elif fault.kind == "kill_processor":
            await self._kill_processor(fault)
        elif fault.kind == "kill_submitter":
            await self._kill_submitter(fault)
        elif fault.kind == "pause_broker":
            await self._pause_broker(fault.duration)
        else:
            await self._fill_disk(fault.duration)

    async def _restart(self, old: Role, *, args: tuple[str, ...] = ()) -> Role:
        await asyncio.sleep(0)  # keep the kill and restart in separate loop turns
        new = await self.cluster.start(old.role, old.name, dicom_port=old.dicom_port, args=args)
        self._restarts += 1
        return new

    async def _kill_scp(self, fault: Fault) -> None:
        slot = fault.target

        async def busy() -> bool:
            return self.active[slot] > 0

        self.log.aimed["kill_scp"] = await _until(busy, AIM_S)
        old = self.roles.scps[slot]
        down = time.monotonic()  # before the signal: a sender may see the reset at once
        await self.cluster.kill(old)
        await asyncio.sleep(fault.duration)  # the planned downtime
        new = await self._restart(old)
        self.roles.scps[slot] = new

        async def up() -> bool:
            new.alive()
            return await answers_echo(new, self.echo_ae)

        if not await _until(up, 60):
            raise AssertionError(f"{new.name} did not answer C-ECHO after its restart")
        self.log.downtimes.append((slot, down, time.monotonic()))

    async def _kill_processor(self, fault: Fault) -> None:
        slot = fault.target
        old = self.roles.processors[slot]

        async def windows_open() -> bool:
            with contextlib.suppress(Exception):
                return (await scrape(old.url)).get(f"{NS}open_groups", 0.0) > 0
            return False

        self.log.aimed["kill_processor"] = await _until(windows_open, AIM_S)
        await self.cluster.kill(old)
        await asyncio.sleep(fault.duration)
        new = await self._restart(old, args=("--group-instance-id", old.name))
        self.roles.processors[slot] = new

    async def _kill_submitter(self, fault: Fault) -> None:
        old = self.roles.submitter
        failed_before = self._failures()

        async def retry_pending() -> bool:
            return self._failures() > failed_before

        self.log.aimed["kill_submitter"] = await _until(retry_pending, AIM_S)
        await self.cluster.kill(old)
        await asyncio.sleep(fault.duration)
        self.roles.submitter = await self._restart(old)

    def _failures(self) -> int:
        return sum(1 for r in list(self.platform.requests) if r.status >= 500)

    async def _pause_broker(self, seconds: float) -> None:
        os.kill(self.broker_pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)  # the planned pause
        finally:
            os.kill(self.broker_pid, signal.SIGCONT)
        self.log.paused_s += seconds

    async def _fill_disk(self, seconds: float) -> None:
        free = shutil.disk_usage(self.filler.parent).free
        size = free - self.reserve_bytes + 256 * 2**20
        fd = os.open(self.filler, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            os.posix_fallocate(fd, 0, max(size, 1))
            await asyncio.sleep(seconds)  # the planned time past the watermark
        finally:
            os.close(fd)
            self.filler.unlink(missing_ok=True)
        self.log.filled_s += seconds


async def ready(role: Role) -> None:
    """Poll the role's ``/readyz`` until 200."""
    await poll_readyz(role.url, lambda status, body: status == 200 or not role.running)
    role.alive()
