"""One seeded chaos run: the full set of roles on a real broker, senders, faults, verdict.

``await ChaosRun(seed, ...).run()`` starts two SCPs, two processor replicas and the
submitter (with its reclaimer) as separate processes, exactly as compose.yaml runs
them, against an HTTP platform that fails some calls and refuses one study for good.
It streams the plan's studies through DCMTK and pynetdicom senders while the plan's
faults hit, waits until the system settles, then checks :mod:`tests.chaos.invariants`
on the ledger, the storage folder, the platform and the senders' outcomes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from processors.roles.repartition import repartition_keys
from streams.config import load_config
from streams.events import (
    ClockTick,
    EventData,
    GroupClosed,
    InstanceReceived,
    InstancesRemoved,
    JobFailed,
    JobSubmitted,
)
from streams.kafka import ensure_topics, read_topic, rekeyed_topic
from tests.chaos.faults import Faults, Roles, answers_echo, ready
from tests.chaos.invariants import RunFacts, Verdict, Window, check, log_violations
from tests.chaos.plan import AE_GROUP_BY, PROCESSORS, SCPS, Batch, Plan, make_plan
from tests.chaos.senders import Outcome, send
from tests.helpers.cluster import NS, Cluster, poll, scrape
from tests.helpers.loadrun import instance_files
from tests.helpers.platform import PlatformServer
from tests.helpers.processor import PIPELINES
from tests.helpers.waiting import free_port, wait_clock_past_inputs

TIMEOUT_S = 5  # every AE title's grouping timeout (the minimum the AE Title processor allows)
PARTITIONS = 3
HEADROOM = 3 * 2**30  # free space the run may use before the disk counts as full
PHI = "CHAOS-PAT-"  # every patient id of the plan starts with it


@dataclass
class Settings:
    """Knobs of a run (the defaults are what CI and the recorded runs use)."""

    stream_s: float = 15.0
    max_pause_s: float = 30.0
    settle_s: float = 150.0
    #: The roles' log level: DEBUG, so the no-patient-id check covers every level.
    log_level: str = "DEBUG"


def _config(path: Path, *, prefix: str, storage: Path, platform: str, reserve_gb: float) -> Path:
    pipelines = "".join(f"        pipeline-{name}: {pid}\n" for name, pid in PIPELINES.items())
    aes = "".join(
        f"    - ae_title: {ae}\n"
        "      processorSettings:\n"
        f"        groupBy: {group_by}\n"
        f"        timeout: {TIMEOUT_S}\n"
        f"{pipelines}"
        for ae, group_by in AE_GROUP_BY.items()
    )
    path.write_text(
        "adapter_id: chaos\n"
        f"storage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: {PARTITIONS}\n"
        "processor:\n  commit_interval_ms: 200\n"
        "submitter:\n"
        "  kind: http\n"
        f"  url: {platform}\n"
        "  max_attempts: 20\n"
        "  backoff_initial_s: 0.2\n"
        "  backoff_max_s: 1.0\n"
        "  timeout_s: 5\n"
        "http:\n  host: 127.0.0.1\n  port: 0\n"
        "scp:\n"
        "  host: 127.0.0.1\n"
        "  max_associations: 25\n"
        "  watermark_percent: 100\n"
        f"  reserve_space_gb: {reserve_gb:.6f}\n"
        f"  ae_titles:\n{aes}"
    )
    return path


def _storage_files(storage: Path) -> dict[str, str]:
    """``{SOP UID: path}`` of the instance files left (not payloads, not the outbox)."""
    return {p.stem: str(p) for p in instance_files(storage) if p.suffix == ".dcm"}


def unique_events(records: list[Any]) -> tuple[list[EventData], int, list[str]]:
    """The ledger's events once each, by envelope id: ``(events, copies, conflicts)``.

    A processor that lost its partitions while the broker was paused can still have its
    last records in the producer; they land after the new owner wrote the same records
    (deterministic ids, same content): one event written twice, which every consumer
    de-duplicates by id (Kafka transactions would fence such writes). Copies are counted;
    a copy whose content differs from the first is a conflict (a violation).
    """
    seen: dict[str, EventData] = {}
    events: list[EventData] = []
    copies = 0
    conflicts: list[str] = []
    for record in records:
        event_id, data = record.envelope.id, record.envelope.data
        if event_id in seen:
            copies += 1
            if seen[event_id] != data:
                conflicts.append(f"event {event_id} was written twice with different content")
            continue
        seen[event_id] = data
        events.append(data)
    return events, copies, conflicts


def unsettled(events: list[EventData], acked: set[str]) -> str:
    """What the run still waits for ("" once settled): every acked instance is in a group
    with jobs; every job is submitted or dead; the files of every submitted group are
    reclaimed."""
    groups = [e for e in events if isinstance(e, GroupClosed) and e.jobs]
    grouped = {i.sop_instance_uid for g in groups for i in g.instances}
    if not acked <= grouped:
        return f"{len(acked - grouped)} acked instances in no group with jobs"
    submitted = {e.job_id for e in events if isinstance(e, JobSubmitted)}
    dead = {e.job_id for e in events if isinstance(e, JobFailed) and not e.will_retry}
    removed = {u for e in events if isinstance(e, InstancesRemoved) for u in e.sop_instance_uids}
    pending: list[str] = []
    reclaim = 0
    for group in groups:
        ids = {j.job_id for j in group.jobs}
        if not ids <= submitted | dead:
            pending += sorted(ids - submitted - dead)
        elif ids <= submitted and not {i.sop_instance_uid for i in group.instances} <= removed:
            reclaim += 1
    if pending or reclaim:
        return (
            f"{len(pending)} jobs neither submitted nor dead {pending}, "
            f"{reclaim} groups not reclaimed"
        )
    return ""


def job_trail(job_ids: list[str], events: list[EventData], logs: dict[str, Path]) -> str:
    """What the ledger and the roles' logs say of ``job_ids`` (a failed settle's
    diagnosis, so that CI's output alone explains it)."""
    lines: list[str] = []
    for job_id in job_ids:
        lines.append(f"job {job_id}:")
        for event in events:
            if getattr(event, "job_id", None) == job_id or (
                isinstance(event, GroupClosed) and job_id in {j.job_id for j in event.jobs}
            ):
                lines.append(f"  ledger: {type(event).__name__} {_brief(event)}")
        for name, path in logs.items():
            text = path.read_text(errors="replace") if path.exists() else ""
            hits = [line for line in text.splitlines() if job_id in line]
            lines += [f"  {name}: {line[:300]}" for line in hits[-8:]]
    return "\n".join(lines)


def _brief(event: EventData) -> str:
    if isinstance(event, GroupClosed):
        return f"{event.ae_title} {event.reason}, {len(event.instances)} instances"
    if isinstance(event, JobFailed):
        return f"attempt {event.attempt} will_retry {event.will_retry} {event.error[:120]}"
    if isinstance(event, JobSubmitted):
        return f"attempt {event.attempt}"
    return ""


class ChaosRun:
    """One seeded run; see the module docstring."""

    def __init__(
        self,
        seed: int,
        *,
        bootstrap: str,
        broker_pid: int,
        workdir: Path,
        settings: Settings | None = None,
    ) -> None:
        self.seed = seed
        self.bootstrap = bootstrap
        self.broker_pid = broker_pid
        self.workdir = workdir
        self.settings = settings or Settings()
        self.plan: Plan = make_plan(
            seed, stream_s=self.settings.stream_s, max_pause_s=self.settings.max_pause_s
        )
        self.outcomes: list[Outcome] = []
        self.windows: dict[str, Window] = {}
        self.active = [0] * SCPS
        self.ledger_copies = 0
        self.conflicts: list[str] = []

    async def run(self) -> tuple[Verdict, dict[str, Any]]:
        """Run the plan; returns the verdict and a JSON-able record of the run."""
        started = time.monotonic()
        prefix = f"chaos-{self.seed}-{uuid.uuid4().hex[:8]}"
        await ensure_topics(
            self.bootstrap, {f"{prefix}.instances": PARTITIONS, f"{prefix}.jobs": PARTITIONS}
        )
        storage = self.workdir / "storage"
        storage.mkdir(parents=True)
        reserve = shutil.disk_usage(storage).free - HEADROOM
        rng = random.Random(self.seed)
        refused = self.plan.refused_studies

        def reject(body: dict[str, Any]) -> tuple[int, str] | None:
            studies = {i["study_instance_uid"] for i in body.get("instances", [])}
            return (422, "refused by the chaos plan") if studies & refused else None

        def flaky() -> bool:
            return rng.random() < self.plan.platform_fail_rate

        with PlatformServer(reject=reject, flaky=flaky) as platform:
            config = _config(
                self.workdir / "adapter.yaml",
                prefix=prefix,
                storage=storage,
                platform=platform.url,
                reserve_gb=reserve / 1e9,
            )
            cluster = Cluster(
                self.bootstrap, config, self.workdir, log_level=self.settings.log_level
            )
            try:
                verdict = await self._run(cluster, platform, storage, prefix, reserve)
            finally:
                await cluster.kill_all()
        record = {
            "seed": self.seed,
            "seconds": round(time.monotonic() - started, 1),
            "violations": verdict.violations,
            **verdict.figures,
        }
        return verdict, record

    async def _run(
        self, cluster: Cluster, platform: PlatformServer, storage: Path, prefix: str, reserve: int
    ) -> Verdict:
        scps = [await cluster.start("scp", f"scp-{n}", dicom_port=free_port()) for n in range(SCPS)]
        processors = []
        for n in range(PROCESSORS):
            static = ("--group-instance-id", f"processor-{n}")
            processors.append(await cluster.start("process", f"processor-{n}", args=static))
        roles = Roles(scps, processors, await cluster.start("submit", "submitter"))
        echo_ae = next(iter(AE_GROUP_BY))
        for role in [*roles.scps, *roles.processors, roles.submitter]:
            await ready(role)
        for scp in roles.scps:
            await poll(f"{scp.name} C-ECHO", lambda s=scp: answers_echo(s, echo_ae), 60)
        faults = Faults(
            cluster,
            roles,
            broker_pid=self.broker_pid,
            filler=self.workdir / "disk-filler.bin",
            reserve_bytes=reserve,
            platform=platform,
            active=self.active,
            echo_ae=echo_ae,
        )
        t0 = time.monotonic()
        tasks = [asyncio.create_task(self._send(roles, b, t0)) for b in self.plan.batches]
        tasks += [
            asyncio.create_task(self._at(t0 + f.at, faults.inject(f))) for f in self.plan.faults
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        events = await self._settle(cluster, roles, prefix)
        keys, received = await self._dump(prefix)
        facts = RunFacts(
            outcomes=self.outcomes,
            ledger=events,
            files=_storage_files(storage),
            pipelines=list(PIPELINES),
            refused_studies=self.plan.refused_studies,
            created=[r.key for r in list(platform.requests) if r.status == 201],
            windows=self.windows,
            downtimes=faults.log.downtimes,
            keys=keys,
            phi=PHI,
            received=received,
        )
        verdict = check(facts)
        verdict.violations.extend(self.conflicts)
        verdict.figures["ledger_copies"] = self.ledger_copies
        self._check_processes(cluster, verdict)
        codes = await cluster.terminate()
        for name, code in codes.items():
            if code != 0:
                verdict.fail(f"{name} exited {code} on SIGTERM after the run")
        verdict.figures.update(
            kills=sum(v for k, v in faults.log.kills.items() if k.startswith("kill")),
            aimed=sum(faults.log.aimed.values()),
            paused_s=round(faults.log.paused_s),
            filled_s=round(faults.log.filled_s),
            senders_dcmtk=sum(b.sender == "dcmtk" for b in self.plan.batches),
            senders_pynetdicom=sum(b.sender == "pynetdicom" for b in self.plan.batches),
        )
        return verdict

    async def _at(self, when: float, action: Any) -> None:
        await asyncio.sleep(max(0.0, when - time.monotonic()))  # the plan's schedule
        await action

    async def _send(self, roles: Roles, batch: Batch, t0: float) -> None:
        await asyncio.sleep(max(0.0, t0 + batch.at - time.monotonic()))  # the plan's schedule
        scp = roles.scps[batch.scp]
        folder = self.workdir / "sent" / uuid.uuid4().hex[:8]
        self.active[batch.scp] += 1
        start = time.monotonic()
        try:
            outcomes = await asyncio.to_thread(send, scp.dicom_port, batch, folder)
        finally:
            self.active[batch.scp] -= 1
        window = Window(batch.scp, start, time.monotonic())
        for outcome in outcomes:
            self.windows[outcome.instance.sop] = window
        self.outcomes.extend(outcomes)

    async def _settle(self, cluster: Cluster, roles: Roles, prefix: str) -> list[EventData]:
        """Wait for the run to settle, then once more for anything late (a duplicate
        group would be written within timeout + grace after the last instance)."""
        acked = {o.instance.sop for o in self.outcomes if o.acked}
        jobs_topic = f"{prefix}.jobs"
        events: list[EventData] = []

        async def metric(url: str, name: str) -> float | None:
            try:
                return (await scrape(url)).get(f"{NS}{name}")
            except httpx.TransportError:  # a restarted role not listening yet
                return None

        waiting = ""

        async def done() -> bool:
            nonlocal events, waiting
            cluster.alive()
            for scp in roles.scps:
                pending = await metric(scp.url, "outbox_pending_bytes")
                if pending != 0.0:
                    waiting = f"{scp.name}: outbox_pending_bytes {pending}"
                    return False
            for processor in roles.processors:
                still = await metric(processor.url, "open_groups")
                if still != 0.0:
                    waiting = f"{processor.name}: open_groups {still}"
                    return False
            events, self.ledger_copies, self.conflicts = unique_events(
                await read_topic(self.bootstrap, jobs_topic)
            )
            waiting = unsettled(events, acked)
            return not waiting

        for what in ("the run to settle", "the run to settle again"):
            try:
                await poll(what, done, self.settings.settle_s)
            except AssertionError as exc:  # say what it still waited for, and why
                pending = re.findall(r"[0-9a-f]{8}-[0-9a-f-]{27}", waiting)
                logs = {role.name: role.log for role in cluster.roles}
                trail = job_trail(pending, events, logs)
                raise AssertionError(f"{exc}; still waiting for: {waiting}\n{trail}") from None
            if what == "the run to settle":
                await self._clock_past_inputs(cluster, prefix)
        return events

    async def _clock_past_inputs(self, cluster: Cluster, prefix: str) -> None:
        """Not a fixed wait for a late duplicate to show: every AE title's processes
        committed past a tick past every input they read, so any second group would be
        in the ledger before the re-check."""
        config = load_config(cluster.config, env={})
        rekeyed = repartition_keys(config)
        for ae in AE_GROUP_BY:
            topic = rekeyed_topic(prefix, ae) if ae in rekeyed else f"{prefix}.instances"
            await wait_clock_past_inputs(
                self.bootstrap,
                prefix,
                ae,
                TIMEOUT_S * 1000,
                topic=topic,
                timeout_s=self.settings.settle_s,
                alive=cluster.alive,
            )

    async def _dump(self, prefix: str) -> tuple[list[str], dict[str, float]]:
        """Both topics and the senders' outcomes as JSON lines in the run's folder, for
        whoever reads a failed run; returns the record key of every event about a patient
        on both topics (clock ticks are keyed ``clock``) and each stored instance's
        receipt time at its SCP (seconds)."""
        keys: list[str] = []
        received: dict[str, float] = {}
        for topic in ("instances", "jobs"):
            records = await read_topic(self.bootstrap, f"{prefix}.{topic}")
            keys += [r.key or "" for r in records if not isinstance(r.envelope.data, ClockTick)]
            for r in records:
                if isinstance(r.envelope.data, InstanceReceived):
                    received[r.envelope.data.sop_instance_uid] = r.envelope.data.received_at / 1000
            with (self.workdir / f"{topic}.jsonl").open("w") as out:
                for r in records:
                    line = {"partition": r.partition, "offset": r.offset, "id": r.envelope.id}
                    line |= {"type": r.envelope.type, "source": r.envelope.source}
                    line["data"] = dataclasses.asdict(r.envelope.data)
                    out.write(json.dumps(line, default=str) + "\n")
        with (self.workdir / "outcomes.jsonl").open("w") as out:
            for o in self.outcomes:
                out.write(json.dumps(dataclasses.asdict(o)) + "\n")
        return keys, received

    def _check_processes(self, cluster: Cluster, verdict: Verdict) -> None:
        for role in cluster.roles:
            text = role.log.read_text(errors="replace")
            verdict.violations.extend(log_violations(role.name, text, PHI))


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one run's record to a JSON-lines file (``CHAOS_REPORT``)."""
    with path.open("a") as out:
        out.write(json.dumps(record, sort_keys=True) + "\n")


__all__ = ["ChaosRun", "Settings", "append_record", "unique_events"]
