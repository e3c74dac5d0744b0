"""Run one side (a processor process) against the pre-produced log and time it.

Both sides are child processes measured the same way, with no hook in either:

* ``spawn``  -- the harness starts the process;
* ``stable`` -- its consumer group is first ``Stable`` with a member (records flow);
* ``first``  -- the process's own "first record processed" mark, where it prints one;
* ``last``   -- the broker's append time of the last expected closed group on the
  output topic (``LogAppendTime``: the record is written, i.e. acknowledged).

The headline rate is ``events / (last - stable)``; ``events / (last - spawn)`` includes
interpreter start, imports and the group join. Peak RSS is read from ``/proc``.

A side may run as several processes, replicas in one consumer group
(:attr:`SideSpec.replica_argvs`): all are spawned at once, ``stable`` is the group's first
``Stable`` with all of them as members, CPU is the sum over the processes and peak RSS
the largest process's.
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

from bench.windows.kafka_io import GroupProbe, OutputWatcher, Parser, WatchResult, now_ms


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
    peak_rss_kb: int | None = None  # of the largest process
    cpu_s: float | None = None  # user+system CPU of the process(es), stable -> last group
    broker_cpu_s: float | None = None  # of the dedicated broker over the same span
    exit_code: int | None = None  # the first non-zero exit code of its processes, else 0
    log_path: str = ""  # of every process, ", "-separated
    notes: list[str] = field(default_factory=list)
    # replicas: processes in one consumer group, and what the side is without them
    replicas: int = 1
    base_name: str = ""
    peak_rss_kb_each: list[int | None] = field(default_factory=list)
    assignment: list[list[int]] = field(default_factory=list)  # partitions of each member
    # work before the stable mark: the group Stable with fewer members than replicas, or
    # a counted output record appended, at this time
    split_ms: int | None = None
    group_changes: list[str] = field(default_factory=list)  # after the stable mark

    @property
    def complete(self) -> bool:
        """All expected groups with all events arrived."""
        return self.groups == self.expected_groups and self.members == self.events

    @property
    def clean_start(self) -> bool:
        """All replicas joined in one go and stayed (always true for one process):
        no member worked alone before the stable mark, no rebalance after it."""
        return self.split_ms is None and not self.group_changes

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
    # replicas: the argv of each process (one consumer group); empty: one process, argv
    replica_argvs: Sequence[Sequence[str]] = ()
    base_name: str = ""  # the name without the replicas ("" = name)

    @property
    def processes(self) -> Sequence[Sequence[str]]:
        """The argv of every process of the side."""
        return self.replica_argvs or (self.argv,)


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
    """Start the process(es), wait for every expected group (or the timeout), stop them.

    Replicas log to ``<log_path stem>.<n>.log``, one file each.
    """
    argvs = spec.processes
    replicas = len(argvs)
    logs = [log_path] if replicas == 1 else [
        log_path.with_suffix(f".{n + 1}{log_path.suffix}") for n in range(replicas)
    ]  # fmt: skip
    result = SideResult(
        spec.name, events, expected_groups, log_path=", ".join(map(str, logs)),
        replicas=replicas, base_name=spec.base_name or spec.name,
    )  # fmt: skip
    watcher = OutputWatcher(
        bootstrap, spec.output_topic, spec.parse, expected_groups, committed=spec.transactional
    )
    at_stable: dict[int, float | None] = {}
    pids: list[int] = [broker_pid] if broker_pid else []

    def stable() -> None:
        for pid in pids:
            at_stable[pid] = cpu_seconds(pid)

    probe = GroupProbe(bootstrap, spec.group_id, on_stable=stable, members=replicas)
    await watcher.start()
    await probe.start()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(spec.env or {})
    procs: list[asyncio.subprocess.Process] = []
    readers: list[asyncio.Task[None]] = []
    with contextlib.ExitStack() as files:
        result.spawn_ms = now_ms()
        try:
            for argv, path in zip(argvs, logs, strict=True):
                log_file = files.enter_context(path.open("wb"))
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log_file,
                    env=env,
                    cwd=spec.cwd,
                    start_new_session=True,
                )
                procs.append(proc)
                pids.append(proc.pid)
                readers.append(asyncio.create_task(_read_marks(proc, result)))
            finished = await _wait(watcher, procs, timeout_s)
            await probe.stop()  # before any replica leaves the group
            rss = [_peak_rss_kb(proc.pid) for proc in procs]
            result.peak_rss_kb = max((r for r in rss if r is not None), default=None)
            result.peak_rss_kb_each = rss if replicas > 1 else []
            spent = [_spent(at_stable.get(proc.pid), cpu_seconds(proc.pid)) for proc in procs]
            if None not in spent:
                result.cpu_s = sum(s for s in spent if s is not None)
            if broker_pid:
                result.broker_cpu_s = _spent(at_stable.get(broker_pid), cpu_seconds(broker_pid))
            if not finished:
                gone = [n + 1 for n, proc in enumerate(procs) if proc.returncode is not None]
                result.notes.append(
                    f"stopped after {(now_ms() - result.spawn_ms) / 1000:.0f} s with "
                    f"{watcher.result.groups} of {expected_groups} groups"
                    + (f"; process {', '.join(map(str, gone))} exited first" if gone else "")
                )
        finally:
            codes = await asyncio.gather(*(_stop(proc) for proc in procs))
            result.exit_code = next((c for c in codes if c), codes[0] if codes else None)
            await asyncio.gather(*readers, return_exceptions=True)
            await probe.stop()
            await watcher.stop()
    seen = watcher.result
    result.stable_ms = probe.stable_ms
    result.last_ms = seen.last_seen_ms if spec.transactional else seen.last_append_ms
    result.groups, result.members, result.keys = seen.groups, seen.members, len(seen.keys)
    if seen.groups > expected_groups:
        result.notes.append(f"{seen.groups - expected_groups} groups more than expected")
    if replicas > 1:
        _replica_notes(result, probe, seen)
    return result


def _replica_notes(result: SideResult, probe: GroupProbe, seen: WatchResult) -> None:
    """What the group of a replicated side did, as facts and notes."""
    result.assignment = probe.assignment
    result.split_ms = probe.split_ms
    result.group_changes = list(probe.changes)
    if probe.split_ms is not None and probe.stable_ms is not None:
        result.notes.append(
            f"the group was Stable with fewer than {result.replicas} members "
            f"{(probe.stable_ms - probe.split_ms) / 1000:.2f} s before all joined: work "
            "done then is inside the timing (rate too high)"
        )
    early = seen.first_append_ms
    if early is not None and probe.stable_ms is not None and early < probe.stable_ms:
        result.split_ms = min(early, result.split_ms or early)
        result.notes.append(
            f"a closed group was appended {(probe.stable_ms - early) / 1000:.2f} s before all "
            "replicas joined: work done then is inside the timing (rate too high)"
        )
    if probe.changes:
        result.notes.append(f"the group changed during the run: {'; '.join(probe.changes)}")
    if probe.stable_ms is not None and not all(probe.assignment):
        result.notes.append(f"a replica had no partition: {probe.assignment}")


async def _wait(
    watcher: OutputWatcher, procs: Sequence[asyncio.subprocess.Process], timeout_s: float
) -> bool:
    """Until every expected group arrived (``True``), a process exited or the timeout."""
    done = asyncio.create_task(watcher.done.wait())
    died = [asyncio.create_task(proc.wait()) for proc in procs]
    try:
        finished, _ = await asyncio.wait(
            {done, *died}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in (done, *died):
            task.cancel()
    return done in finished


async def _read_marks(proc: asyncio.subprocess.Process, result: SideResult) -> None:
    """The earliest ``first_record_ms`` mark a process prints (of all replicas)."""
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        with contextlib.suppress(ValueError):
            mark = json.loads(line)
            if isinstance(mark, dict) and "first_record_ms" in mark:
                first = int(mark["first_record_ms"])
                if result.first_ms is None or first < result.first_ms:
                    result.first_ms = first


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
