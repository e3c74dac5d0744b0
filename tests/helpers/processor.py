"""Run the ``process`` role (as the real CLI or in-process) and read what it wrote."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from processors.aetitle import AeTitleJobProcessor
from streams.events import GroupClosed, InputOffset, InstanceReceived, RecordKeys, envelope
from streams.kafka import EventPublisher, Record

REPO = Path(__file__).resolve().parents[2]
AE = "CLARA-BREAST"
PIPELINES = {
    "breast": "8abf244aff7647989d4f6b3987a85759",
    "lung": "c5f996a71e1d4959bd6a2c8cf7130f88",
}


def write_config(
    path: Path,
    *,
    prefix: str,
    storage: Path,
    partitions: int = 3,
    pipelines: Mapping[str, str] | None = None,
    priority: str = "higher",
    adapter_id: str = "process-test",
    commit_interval_ms: int = 1000,
    http_port: int = 0,
    processor: str = "aetitle",
    timeout_s: int | None = None,
) -> Path:
    """A config of one AE title with the seed's Scenario 2 settings (groupBy Study,
    timeout 5 s by default) and ``pipelines`` (default: breast only)."""
    storage.mkdir(parents=True, exist_ok=True)
    chosen = pipelines or {"breast": PIPELINES["breast"]}
    settings = "".join(f"        pipeline-{name}: {pid}\n" for name, pid in chosen.items())
    if timeout_s is not None:
        settings += f"        timeout: {timeout_s}\n"
    path.write_text(
        f"adapter_id: {adapter_id}\n"
        f"storage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: {partitions}\n"
        f"processor:\n  commit_interval_ms: {commit_interval_ms}\n"
        f"http:\n  host: 127.0.0.1\n  port: {http_port}\n"
        "scp:\n  ae_titles:\n"
        f"    - ae_title: {AE}\n"
        f"      processor: {processor}\n"
        "      processorSettings:\n"
        f"        priority: {priority}\n"
        f"{settings}"
    )
    return path


async def start_process(
    config: Path,
    bootstrap: str,
    *,
    env: Mapping[str, str] | None = None,
    group_instance_id: str | None = None,
    log: Path | None = None,
) -> asyncio.subprocess.Process:
    """``python -m processors.cli process`` (stderr to ``log`` when given, else a pipe)."""
    args = [sys.executable, "-m", "processors.cli", "process", "--config", str(config)]
    args += ["--kafka", bootstrap]
    if group_instance_id:
        args += ["--group-instance-id", group_instance_id]
    stderr = log.open("ab") if log is not None else asyncio.subprocess.PIPE
    try:
        return await asyncio.create_subprocess_exec(
            *args,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    finally:
        if log is not None and not isinstance(stderr, int):
            stderr.close()


async def stop_process(proc: asyncio.subprocess.Process, timeout_s: float = 60.0) -> int:
    """SIGTERM and wait; returns the exit code (kills it if it does not stop)."""
    if proc.returncode is None:
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
    return proc.returncode if proc.returncode is not None else -1


def instance(
    *,
    patient: str,
    study: str,
    sop: str,
    received_at: int,
    series: str | None = None,
    ae: str = AE,
) -> InstanceReceived:
    """An ``instance.received`` as the SCP would publish it."""
    return InstanceReceived(
        called_ae=ae,
        calling_ae="MODALITY1",
        calling_host="127.0.0.1",
        association_id=f"assoc-{study}",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid=sop,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        patient_id=patient,
        study_instance_uid=study,
        series_instance_uid=series or f"{study}.1",
        received_at=received_at,
        uri=f"/storage/{ae}/{study}/{sop}.dcm",
        size=1024,
    )


def key_of(item: InstanceReceived) -> str:
    """The record key an SCP gives ``item`` (the lab secret, as the test roles use)."""
    return RecordKeys()(item.called_ae, item.patient_id)


async def publish_instances(
    publisher: EventPublisher, topic: str, items: Iterable[InstanceReceived]
) -> None:
    """Publish ``instance.received`` events (acks=all) in order."""
    batch = [(key_of(i), envelope(i, source="test-scp", time_ms=i.received_at)) for i in items]
    await publisher.publish_many(topic, batch)


def group_records(records: Sequence[Record]) -> list[tuple[Record, GroupClosed]]:
    """The ``group.closed`` records of a ledger, with where they are."""
    return [
        (r, r.envelope.data)
        for r in records
        if r.envelope.type == "group.closed" and isinstance(r.envelope.data, GroupClosed)
    ]


def job_groups(records: Sequence[Record]) -> list[GroupClosed]:
    """``group.closed`` records that carry jobs (not removal requests)."""
    return [g for _, g in group_records(records) if g.jobs]


async def readyz(url: str) -> tuple[int, dict[str, object]] | None:
    """``(status, body)`` of ``GET /readyz``, or ``None`` while nothing listens."""
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            response = await client.get(f"{url}/readyz")
    except httpx.TransportError:
        return None
    return response.status_code, response.json()


async def poll_readyz(
    url: str, accept: Callable[[int, dict[str, object]], bool]
) -> tuple[int, dict[str, object]]:
    """Poll ``/readyz`` until ``accept(status, body)`` holds (a readiness poll, 60 s)."""
    deadline = time.monotonic() + 60
    last = None
    while time.monotonic() < deadline:
        last = await readyz(url)
        if last is not None and accept(*last):
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never matched; last answer {last}")


@dataclass(frozen=True)
class JobCheck:
    """Per pipeline: how many jobs list each SOP Instance UID; and every job id."""

    per_pipeline: dict[str, Counter[str]]
    job_ids: list[str]


def count_jobs(groups: Iterable[GroupClosed]) -> JobCheck:
    """Count jobs per pipeline and SOP Instance UID over ``groups``."""
    per: dict[str, Counter[str]] = {}
    ids: list[str] = []
    for group in groups:
        for job in group.jobs:
            ids.append(job.job_id)
            counter = per.setdefault(job.pipeline_name, Counter())
            counter.update(i.sop_instance_uid for i in group.instances)
    return JobCheck(per, ids)


# -- a stream of interleaved studies (crash and rebalance tests) -----------------------

TIMEOUT_MS = 5_000  # Scenario 2's timeout
GRACE_MS = 1_000  # processor.grace_ms default
STUDIES = 30


@dataclass(frozen=True)
class Planned:
    at_s: float  # when to publish, from the start of the stream
    patient: str
    study: str
    sop: str


def plan(rng: random.Random, studies: int = STUDIES) -> list[Planned]:
    """30 interleaved studies: each starts within 6 s, 3-5 instances 0.2-1.2 s apart
    (always less than the 5 s timeout, so each study is one group)."""
    out: list[Planned] = []
    for n in range(studies):
        at = rng.uniform(0.0, 6.0)
        study = f"1.2.826.0.1.3680043.10.{n}"
        for i in range(rng.randint(3, 5)):
            out.append(Planned(at, f"PAT-{n % 6}", study, f"{study}.{i}"))
            at += rng.uniform(0.2, 1.2)
    return sorted(out, key=lambda p: p.at_s)


async def stream(bootstrap: str, topic: str, planned: list[Planned]) -> int:
    """Publish each instance at its planned moment, stamped then; returns the newest
    ``received_at``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    newest = 0
    async with EventPublisher(bootstrap) as publisher:
        for item in planned:
            await asyncio.sleep(max(0.0, start + item.at_s - loop.time()))  # traffic pacing
            now = int(time.time() * 1000)
            data = instance(patient=item.patient, study=item.study, sop=item.sop, received_at=now)
            await publisher.publish(topic, key_of(data), envelope(data, source="scp", time_ms=now))
            newest = max(newest, now)
    return newest


async def settle_after(newest_ms: int, alive: Callable[[], None]) -> None:
    """Wait until every window of events up to ``newest_ms`` has had time to close by
    the wall clock (so a duplicate group would have been written by now)."""
    settle = newest_ms + TIMEOUT_MS + GRACE_MS + 1_500
    while time.time() * 1000 < settle:
        alive()
        await asyncio.sleep(0.2)


def all_in_jobs(planned: Sequence[Planned]) -> Callable[[list[Record]], bool]:
    """A ledger condition: every planned instance is in a job of every pipeline."""
    sops = {p.sop for p in planned}

    def done(records: list[Record]) -> bool:
        check = count_jobs(job_groups(records))
        return all(set(check.per_pipeline.get(name, ())) >= sops for name in PIPELINES)

    return done


def assert_exactly_once(records: Sequence[Record], planned: Sequence[Planned]) -> None:
    """Every planned instance in exactly one job per pipeline, no job id twice, every
    study exactly one group with all its instances, nothing reclaimed."""
    groups = job_groups(records)
    check = count_jobs(groups)
    expected = Counter({p.sop: 1 for p in planned})
    for name in PIPELINES:
        assert check.per_pipeline[name] == expected, f"pipeline {name}: not exactly once"
    assert len(check.job_ids) == len(set(check.job_ids)), "a job id was written twice"
    removals = [g for _, g in group_records(records) if not g.jobs]
    assert removals == [], "nothing was to be reclaimed"
    by_study: dict[str, list[str]] = {}
    for p in planned:
        by_study.setdefault(p.study, []).append(p.sop)
    assert sorted(g.group_key for g in groups) == sorted(by_study), "a study split or merged"
    for group in groups:
        members = sorted(i.sop_instance_uid for i in group.instances)
        assert members == sorted(by_study[group.group_key]), "a study was split or merged"
        assert [j.pipeline_name for j in group.jobs] == list(PIPELINES)


class ExplodingProcessor(AeTitleJobProcessor):
    """An AE Title Job Processor that raises on the instance whose SOP UID is ``boom``."""

    def handle_record(self, instance: InstanceReceived, position: InputOffset, time: int) -> None:
        if instance.sop_instance_uid == "boom":
            raise RuntimeError("cannot handle this instance")
        super().handle_record(instance, position, time)
