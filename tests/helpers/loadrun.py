"""Load rounds (issue 8), the driver: the real roles as separate processes, one round
of concurrent associations at a time, and the figures of each round.

:class:`LoadRun` starts one SCP, one processor and one submitter (which also runs the
reclaimer) with :class:`tests.helpers.cluster.Cluster`, exactly as ``compose.yaml`` runs
them, on fresh topics. :meth:`LoadRun.round` writes a round's files, sends them over
concurrent DCMTK associations while sampling each role's RSS, then polls (with a
deadline) until every instance is in a job of every pipeline, every job is submitted and
every instance file is reclaimed; once the roles are idle it records RSS, open file
descriptors and threads of each. The checks of exactly-once are in
:mod:`tests.helpers.loadcheck`.
"""

from __future__ import annotations

import asyncio
import collections
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from streams.events import GroupClosed, InstancesRemoved, JobSubmitted
from streams.kafka import Record, ensure_topics, read_to_end
from tests.helpers.cluster import NS, Cluster, Role, poll, scrape
from tests.helpers.dicom import echoscu
from tests.helpers.load import (
    PeakSampler,
    Planned,
    ProcStats,
    Sent,
    Shape,
    mib,
    proc_stats,
    send_association,
    write_round,
)
from tests.helpers.processor import PIPELINES, poll_readyz
from tests.helpers.waiting import free_port

AE = "CLARA-LOAD"
PARTITIONS = 6
TIMEOUT_S = 5  # the AE title's grouping timeout: the minimum the settings accept


def write_config(path: Path, *, prefix: str, storage: Path, max_associations: int) -> Path:
    """One config for every role; ports and adapter ids come from the env (as compose)."""
    storage.mkdir(parents=True, exist_ok=True)
    pipelines = "".join(f"        pipeline-{name}: {pid}\n" for name, pid in PIPELINES.items())
    path.write_text(
        "adapter_id: load\n"
        f"storage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: {PARTITIONS}\n"
        "http:\n  host: 127.0.0.1\n  port: 0\n"
        "submitter:\n  kind: kafka\n  payload_retention_hours: 0\n"
        "scp:\n"
        "  host: 127.0.0.1\n"
        f"  max_associations: {max_associations}\n"
        "  watermark_percent: 100\n"
        "  reserve_space_gb: 0\n"
        "  ae_titles:\n"
        f"    - ae_title: {AE}\n"
        "      processor: aetitle\n"
        "      processorSettings:\n"
        "        groupBy: Study\n"
        f"        timeout: {TIMEOUT_S}\n"
        "        priority: normal\n"
        f"{pipelines}"
    )
    return path


class LedgerTail:
    """The jobs topic read incrementally (each :meth:`read` fetches only what is new)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._next: dict[int, int | None] = dict.fromkeys(range(partitions))
        self.records: list[Record] = []
        self.job_groups: list[GroupClosed] = []
        self.submitted: list[str] = []
        self.removed: set[str] = set()

    async def read(self) -> None:
        """Fetch the records written since the last read."""
        read = await read_to_end(self.bootstrap, self.topic, self._next, timeout_s=60)
        for record in read.records:
            data = record.envelope.data
            self.records.append(record)
            if isinstance(data, GroupClosed) and data.jobs:
                self.job_groups.append(data)
            elif isinstance(data, JobSubmitted):
                self.submitted.append(data.job_id)
            elif isinstance(data, InstancesRemoved):
                self.removed.update(data.sop_instance_uids)
        self._next.update(read.ends)


def instance_files(storage: Path) -> list[Path]:
    """Files under ``storage`` outside the adapter's own folders (payloads, outbox)."""
    out: list[Path] = []
    for child in storage.iterdir():
        if child.name in ("payloads", ".outbox"):
            continue
        if child.is_dir():
            out.extend(p for p in child.rglob("*") if p.is_file())
        else:
            out.append(child)
    return out


@dataclass(frozen=True)
class RoundFigures:
    """What one round did and what each role looked like after it."""

    number: int
    instances: int
    seconds: float  # first association opened -> last file reclaimed
    send_seconds: float  # first association opened -> last association released
    groups: int
    jobs: int
    after: dict[str, ProcStats]  # role -> stats once quiescent
    peak_rss: dict[str, int]  # role -> highest RSS sampled during the round
    cpu_s: dict[str, float]  # role (and "senders": every storescu) -> CPU s in the round

    @property
    def rate(self) -> float:
        """Instances per second, end to end (sent, grouped, submitted, reclaimed)."""
        return self.instances / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        """The figures line the docs quote."""
        roles = "; ".join(
            f"{name} RSS {mib(s.rss)} MiB (peak {mib(self.peak_rss[name])}) "
            f"fds {s.fds} threads {s.threads} CPU {self.cpu_s[name]:.1f} s"
            for name, s in self.after.items()
        )
        return (
            f"round {self.number}: {self.instances} instances in {self.seconds:.1f} s "
            f"({self.rate:.0f} inst/s end to end; sent in {self.send_seconds:.1f} s, "
            f"{self.instances / self.send_seconds:.0f} inst/s), {self.groups} groups, "
            f"{self.jobs} jobs; {roles}; senders CPU {self.cpu_s['senders']:.1f} s"
        )


@dataclass
class RoundResult:
    """A round's plan, what the senders reported, and its figures."""

    planned: list[Planned]
    sent: list[Sent]
    figures: RoundFigures


class LoadRun:
    """The roles of a load run and the rounds sent to them; see the module docstring."""

    def __init__(self, bootstrap: str, prefix: str, work: Path, shape: Shape) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.work = work
        self.shape = shape
        self.storage = work / "storage"
        self.jobs_topic = f"{prefix}.jobs"
        config = write_config(
            work / "adapter.yaml",
            prefix=prefix,
            storage=self.storage,
            max_associations=shape.associations,
        )
        self.cluster = Cluster(bootstrap, config, work)
        self.tail = LedgerTail(bootstrap, self.jobs_topic, PARTITIONS)
        self.roles: dict[str, Role] = {}
        self.rounds: list[RoundResult] = []

    async def start(self) -> None:
        """Create the topics, start the three roles and wait until each is ready."""
        topics = {f"{self.prefix}.instances": PARTITIONS, self.jobs_topic: PARTITIONS}
        await ensure_topics(self.bootstrap, topics)
        cluster = self.cluster
        self.roles["scp"] = await cluster.start("scp", "scp", dicom_port=free_port())
        self.roles["processor"] = await cluster.start("process", "processor")
        self.roles["submitter"] = await cluster.start("submit", "submitter")

        def ready(status: int, body: dict[str, object]) -> bool:
            cluster.alive()
            return status == 200

        for role in self.roles.values():
            _, body = await poll_readyz(role.url, ready)
            assert body["status"] == "ready", (role.name, body)
        scp = self.roles["scp"]

        async def answers() -> bool:
            cluster.alive()
            result = await asyncio.to_thread(echoscu, scp.dicom_port, aec=AE)
            return result.returncode == 0

        await poll("SCP answers C-ECHO", answers, timeout_s=60)

    def pids(self) -> dict[str, int]:
        """Role name -> pid."""
        return {name: role.proc.pid for name, role in self.roles.items()}

    async def round(self, number: int, *, deadline_s: float = 180.0) -> RoundResult:
        """Send one round and wait until it is submitted and reclaimed; see the module."""
        folder = self.work / f"round-{number}"
        planned = await asyncio.to_thread(
            write_round, folder, self.shape, (number - 1) * self.shape.patients
        )
        sops = {sop for p in planned for sop in p.sops}
        sampler = PeakSampler(self.pids())
        cpu_before = {name: proc_stats(pid).cpu_s for name, pid in self.pids().items()}
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        sampler.start()
        start = time.monotonic()
        port = self.roles["scp"].dicom_port
        sent = await asyncio.gather(*(send_association(port, p, aec=AE) for p in planned))
        send_s = time.monotonic() - start
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)  # the storescu processes
        senders = reaped.ru_utime + reaped.ru_stime - children.ru_utime - children.ru_stime
        await self._wait_done(sops, deadline_s)
        seconds = time.monotonic() - start
        peaks = await sampler.stop()
        shutil.rmtree(folder)
        after = await self.quiescent()
        groups = [g for g in self.tail.job_groups if g.instances[0].sop_instance_uid in sops]
        figures = RoundFigures(
            number=number,
            instances=len(sops),
            seconds=seconds,
            send_seconds=send_s,
            groups=len(groups),
            jobs=sum(len(g.jobs) for g in groups),
            after=after,
            peak_rss=peaks,
            cpu_s={
                **{name: after[name].cpu_s - cpu_before[name] for name in after},
                "senders": senders,
            },
        )
        result = RoundResult(planned, list(sent), figures)
        self.rounds.append(result)
        return result

    async def _wait_done(self, sops: set[str], deadline_s: float) -> None:
        tail = self.tail

        async def finished() -> bool:
            self.cluster.alive()
            await tail.read()
            per_pipeline: dict[str, set[str]] = {name: set() for name in PIPELINES}
            job_ids: set[str] = set()
            for group in tail.job_groups:
                members = {i.sop_instance_uid for i in group.instances}
                if members & sops:
                    for job in group.jobs:
                        per_pipeline.setdefault(job.pipeline_name, set()).update(members)
                        job_ids.add(job.job_id)
            if not all(sops <= per_pipeline[name] for name in PIPELINES):
                return False
            if not job_ids <= set(tail.submitted) or not sops <= tail.removed:
                return False
            return not await asyncio.to_thread(instance_files, self.storage)

        await poll("every instance in a submitted job and reclaimed", finished, deadline_s)

    async def quiescent(self, timeout_s: float = 60.0) -> dict[str, ProcStats]:
        """Wait until no group is open, the outbox is empty and each role's fd and
        thread counts hold still over three samples; return every role's stats."""
        processor, scp = self.roles["processor"], self.roles["scp"]
        history: list[dict[str, ProcStats]] = []

        async def idle() -> bool:
            self.cluster.alive()
            # Sampled before scraping: the connection of a scrape is not counted (the
            # previous poll's one is closed by now).
            history.append({name: proc_stats(pid) for name, pid in self.pids().items()})
            if (await scrape(processor.url)).get(f"{NS}open_groups", -1.0) != 0.0:
                return False
            if (await scrape(scp.url)).get(f"{NS}outbox_pending_bytes", -1.0) != 0.0:
                return False
            last = history[-3:]
            return len(last) == 3 and all(_same_counts(last[0], s) for s in last[1:])

        await poll("roles idle after the round", idle, timeout_s)
        return history[-1]

    async def stop(self) -> dict[str, int]:
        """SIGTERM every role; returns their exit codes."""
        return await self.cluster.terminate()


def _same_counts(a: dict[str, ProcStats], b: dict[str, ProcStats]) -> bool:
    return all(a[n].fds == b[n].fds and a[n].threads == b[n].threads for n in a)


def _diff(a: tuple[str, ...], b: tuple[str, ...]) -> list[str]:
    return sorted((collections.Counter(a) - collections.Counter(b)).elements())


@dataclass(frozen=True)
class Bound:
    """How far a role may move from its state after the warm-up round and be "flat":
    RSS up to ``max(fraction x RSS, floor)`` more, the same open fds, and at most
    ``threads`` more threads (pools that start workers lazily and keep them)."""

    fraction: float = 0.10
    floor: int = 16 * 1024 * 1024
    threads: int = 2

    def allowed(self, before: int) -> int:
        """The largest RSS accepted after a round, given ``before`` after the warm-up."""
        return before + max(int(before * self.fraction), self.floor)


def flatness(rounds: list[RoundFigures], bound: Bound) -> list[str]:
    """Problems with "memory stays flat": round 1 warms up (imports, pools, allocator
    arenas, Kafka buffers); every later round must end within ``bound`` of it. Measured
    from round 1 rather than from the round before, a leak adds up over the rounds while
    the allocator's one-off steps do not."""
    problems: list[str] = []
    if len(rounds) < 2:
        return problems
    base = rounds[0]
    for later in rounds[1:]:
        for name, stats in later.after.items():
            old = base.after[name]
            if stats.rss > bound.allowed(old.rss):
                problems.append(
                    f"{name}: RSS {mib(old.rss)} MiB after round {base.number}, "
                    f"{mib(stats.rss)} after round {later.number} "
                    f"(allowed {mib(bound.allowed(old.rss))})"
                )
            if stats.fds != old.fds:
                problems.append(
                    f"{name}: {old.fds} open fds after round {base.number}, {stats.fds} "
                    f"after round {later.number} (new: {_diff(stats.fd_kinds, old.fd_kinds)}, "
                    f"gone: {_diff(old.fd_kinds, stats.fd_kinds)})"
                )
            if stats.threads > old.threads + bound.threads:
                problems.append(
                    f"{name}: {old.threads} threads after round {base.number}, "
                    f"{stats.threads} after round {later.number} "
                    f"(allowed {old.threads + bound.threads})"
                )
    return problems


__all__ = [
    "AE",
    "PARTITIONS",
    "TIMEOUT_S",
    "Bound",
    "LedgerTail",
    "LoadRun",
    "RoundFigures",
    "RoundResult",
    "flatness",
    "instance_files",
    "write_config",
]
