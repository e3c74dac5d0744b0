"""Run one side (a processor process) against the pre-produced log and time it.

Both sides are child processes measured the same way, with no hook in either:

* ``spawn``  -- the harness starts the process;
* ``stable`` -- its consumer group is first ``Stable`` with a member (records flow);
* ``first``  -- the process's own "first record processed" mark, where it prints one;
* ``last``   -- the broker's append time of the last expected closed group on the
  output topic (``LogAppendTime``: the record is written, i.e. acknowledged).

The headline rate is ``events / (last - stable)``; ``events / (last - spawn)`` includes
interpreter start, imports and the group join. Peak RSS is read from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.windows.kafka_io import GroupProbe, OutputWatcher, Parser, now_ms


@dataclass(slots=True)
class SideResult:
    """Timings and counts of one side's run."""

    name: str
    events: int
    expected_groups: int
    spawn_ms: int = 0
    stable_ms: int | None = None
    first_ms: int | None = None
    last_ms: int | None = None
    groups: int = 0
    members: int = 0
    keys: int = 0
    peak_rss_kb: int | None = None
    cpu_s: float | None = None  # user+system CPU of the process, stable -> last group
    broker_cpu_s: float | None = None  # of the dedicated broker over the same span
    exit_code: int | None = None
    log_path: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """All expected groups with all events arrived."""
        return self.groups == self.expected_groups and self.members == self.events

    def rate(self, start_ms: int | None) -> float | None:
        """Events/s from ``start_ms`` to the last closed group's append."""
        if start_ms is None or self.last_ms is None or self.last_ms <= start_ms:
            return None
        return self.events / ((self.last_ms - start_ms) / 1000)

    @property
    def rate_from_stable(self) -> float | None:
        """Events/s from the group being stable (the headline figure)."""
        return self.rate(self.stable_ms)

    @property
    def rate_from_spawn(self) -> float | None:
        """Events/s including process start-up and group join."""
        return self.rate(self.spawn_ms)

    @property
    def rate_from_first(self) -> float | None:
        """Events/s from the process's own first-record mark."""
        return self.rate(self.first_ms)


@dataclass(frozen=True, slots=True)
class SideSpec:
    """How to run one side."""

    name: str
    argv: Sequence[str]
    group_id: str | None  # None: the first consumer group created after the spawn
    output_topic: str
    parse: Parser
    input_topic: str = ""
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    # transactional output: count records once committed, end = when the watcher saw
    # the last one (its append time precedes the commit that makes it visible)
    transactional: bool = False


async def run_side(
    spec: SideSpec,
    bootstrap: str,
    *,
    events: int,
    expected_groups: int,
    log_path: Path,
    timeout_s: float,
    broker_pid: int | None = None,
) -> SideResult:
    """Start the process, wait for every expected group (or the timeout), stop it."""
    result = SideResult(spec.name, events, expected_groups, log_path=str(log_path))
    watcher = OutputWatcher(
        bootstrap, spec.output_topic, spec.parse, expected_groups, committed=spec.transactional
    )
    at_stable: dict[str, float | None] = {}
    pids: dict[str, int | None] = {"process": None, "broker": broker_pid}

    def stable() -> None:
        for name, pid in pids.items():
            at_stable[name] = cpu_seconds(pid) if pid else None

    probe = GroupProbe(bootstrap, spec.group_id, on_stable=stable)
    await watcher.start()
    await probe.start()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(spec.env or {})
    with log_path.open("wb") as log_file:
        result.spawn_ms = now_ms()
        proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log_file,
            env=env,
            cwd=spec.cwd,
            start_new_session=True,
        )
        pids["process"] = proc.pid
        reader = asyncio.create_task(_read_marks(proc, result, log_file))
        try:
            finished = await _wait(watcher, proc, timeout_s)
            result.peak_rss_kb = _peak_rss_kb(proc.pid)
            result.cpu_s = _spent(at_stable.get("process"), cpu_seconds(proc.pid))
            if broker_pid:
                result.broker_cpu_s = _spent(at_stable.get("broker"), cpu_seconds(broker_pid))
            if not finished:
                result.notes.append(
                    f"stopped after {timeout_s:.0f} s with {watcher.result.groups} of "
                    f"{expected_groups} groups"
                )
        finally:
            result.exit_code = await _stop(proc)
            await asyncio.gather(reader, return_exceptions=True)
            await probe.stop()
            await watcher.stop()
    seen = watcher.result
    result.stable_ms = probe.stable_ms
    result.last_ms = seen.last_seen_ms if spec.transactional else seen.last_append_ms
    result.groups, result.members, result.keys = seen.groups, seen.members, len(seen.keys)
    if seen.groups > expected_groups:
        result.notes.append(f"{seen.groups - expected_groups} groups more than expected")
    return result


async def _wait(watcher: OutputWatcher, proc: asyncio.subprocess.Process, timeout_s: float) -> bool:
    done = asyncio.create_task(watcher.done.wait())
    died = asyncio.create_task(proc.wait())
    try:
        finished, _ = await asyncio.wait(
            {done, died}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in (done, died):
            task.cancel()
    return done in finished


async def _read_marks(
    proc: asyncio.subprocess.Process, result: SideResult, log_file: object
) -> None:
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        with contextlib.suppress(ValueError):
            mark = json.loads(line)
            if isinstance(mark, dict) and "first_record_ms" in mark and result.first_ms is None:
                result.first_ms = int(mark["first_record_ms"])


async def _stop(proc: asyncio.subprocess.Process) -> int | None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    return proc.returncode


def _spent(before: float | None, after: float | None) -> float | None:
    return after - before if before is not None and after is not None else None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (``/proc/<pid>/stat``)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_kb(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None
