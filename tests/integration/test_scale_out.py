"""Scale-out acceptance (issue 6): two SCPs, two processor replicas and one submitter as
separate processes on one real broker and one storage folder, each started with the
command ``compose.yaml`` gives it (``--log-format json <role> --config FILE --kafka ADDR``
plus its ``DICOM_ADAPTER_*`` overrides).

* One study sent as four associations alternating between the two SCPs, each gap
  shorter than the 5 s timeout, becomes exactly one job per pipeline with every instance.
* While 20 more studies stream in through both SCPs, one processor replica is SIGKILLed
  and a new one started: every instance is still in exactly one job per pipeline, no job
  id is written twice and every job is submitted exactly once.
* ``/metrics`` of each process counts exactly that traffic; ``/readyz`` of a processor
  is 503 until its consumer is assigned (a group member holds the rebalance up) and 200
  after.

Every wait is a poll with a deadline; the only sleeps pace the sending side.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from processors.roles import processors_group
from streams.events import GroupClosed, InstancesRemoved, JobSubmitted
from streams.kafka import Record, ensure_topics
from tests.helpers.cluster import NS, Cluster, Role, poll, scrape
from tests.helpers.dicom import dcmtk, echoscu, make_ct, storescu, write_instances
from tests.helpers.processor import PIPELINES, poll_readyz
from tests.helpers.waiting import HoldRebalance, free_port, wait_for_ledger

pytestmark = [pytest.mark.kafka, pytest.mark.dicom, pytest.mark.slow]

AE = "CLARA-CT"
PARTITIONS = 6
TIMEOUT_S = 5.0  # the AE title's grouping timeout (the default)
SETTLE_S = TIMEOUT_S + 1.0 + 1.5  # timeout + processor grace + margin
STUDIES = 20


def _config(path: Path, *, prefix: str, storage: Path) -> Path:
    """One config file for every process; ports and adapter ids come from the env."""
    storage.mkdir(parents=True, exist_ok=True)  # the shared volume exists before any role
    pipelines = "".join(f"        pipeline-{name}: {pid}\n" for name, pid in PIPELINES.items())
    path.write_text(
        "adapter_id: scale-out\n"
        f"storage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: {PARTITIONS}\n"
        "processor:\n  commit_interval_ms: 200\n"
        "http:\n  host: 127.0.0.1\n  port: 0\n"
        "scp:\n"
        "  host: 127.0.0.1\n"
        "  watermark_percent: 100\n"
        "  reserve_space_gb: 0\n"
        "  ae_titles:\n"
        f"    - ae_title: {AE}\n"
        "      processor: aetitle\n"
        "      processorSettings:\n"
        "        priority: higher\n"
        f"{pipelines}"
    )
    return path


async def send(scp: Role, folder: Path, datasets: list[Dataset]) -> None:
    """One association (DCMTK storescu) to ``scp``; records what it sent."""
    files = write_instances(folder, datasets)
    result = await asyncio.to_thread(storescu, scp.dicom_port, files, aec=AE)
    assert result.returncode == 0, result.stderr
    scp.sent.extend(str(ds.SOPInstanceUID) for ds in datasets)


async def echo_ready(scp: Role) -> None:
    async def answers() -> bool:
        scp.alive()
        result = await asyncio.to_thread(echoscu, scp.dicom_port, aec=AE)
        return result.returncode == 0

    await poll(f"{scp.name} C-ECHO", answers, timeout_s=60)


def _jobs(records: list[Record]) -> list[GroupClosed]:
    return [
        r.envelope.data
        for r in records
        if isinstance(r.envelope.data, GroupClosed) and r.envelope.data.jobs
    ]


def _submitted(records: list[Record]) -> list[str]:
    return [r.envelope.data.job_id for r in records if isinstance(r.envelope.data, JobSubmitted)]


def _everything_submitted(sops: set[str]) -> Callable[[list[Record]], bool]:
    def done(records: list[Record]) -> bool:
        groups = _jobs(records)
        seen: dict[str, set[str]] = collections.defaultdict(set)
        ids = set()
        for group in groups:
            for job in group.jobs:
                ids.add(job.job_id)
                seen[job.pipeline_name].update(i.sop_instance_uid for i in group.instances)
        every = all(seen[name] >= sops for name in PIPELINES)
        return every and ids <= set(_submitted(records))

    return done


def _json_lines(log: Path) -> list[dict[str, object]]:
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines, f"{log.name} is empty"
    out = []
    for line in lines:
        record = orjson.loads(line)  # every line is one JSON object, nothing else
        assert isinstance(record, dict), line
        out.append(record)
    return out


async def test_two_scps_two_processors_one_submitter_on_one_bus(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    if dcmtk("storescu") is None or dcmtk("echoscu") is None:
        pytest.fail("DCMTK storescu/echoscu are required (apt-get install -y dcmtk)")
    prefix = unique_name("scale")
    instances_topic, jobs_topic = f"{prefix}.instances", f"{prefix}.jobs"
    await ensure_topics(kafka_bootstrap, {instances_topic: PARTITIONS, jobs_topic: PARTITIONS})
    config = _config(tmp_path / "adapter.yaml", prefix=prefix, storage=tmp_path / "storage")
    cluster = Cluster(kafka_bootstrap, config, tmp_path)

    # A member of the processors' group that holds the first rebalance up: the replicas
    # connect and join, but get no partitions until it lets go.
    holder = HoldRebalance()
    member = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=processors_group(prefix, AE),
        enable_auto_commit=False,
    )
    await member.start()
    member.subscribe([instances_topic], listener=holder)
    try:
        while not holder.assigned.is_set():
            await member.getmany(timeout_ms=100)
        scps = [await cluster.start("scp", f"scp-{n}", dicom_port=free_port()) for n in (1, 2)]
        processors = [await cluster.start("process", f"processor-{n}") for n in "ab"]
        submitter = await cluster.start("submit", "submitter")

        # -- readiness: 503 while the consumer waits for its assignment, 200 after -----
        def connected(status: int, body: dict[str, object]) -> bool:
            cluster.alive()
            checks = body["checks"]
            assert isinstance(checks, dict)
            return bool(checks.get("process kafka connected", {}).get("ok"))

        for replica in processors:
            status, body = await poll_readyz(replica.url, connected)
            assert status == 503, body
            assert body["failing"] == ["process partitions assigned"], body
        holder.release.set()
        await member.stop()
        for role in [*processors, *scps, submitter]:
            status, body = await poll_readyz(role.url, lambda s, b: s == 200)
            assert body["status"] == "ready", (role.name, body)
        assert "submit partitions assigned" in body["checks"]  # type: ignore[operator]
        for scp in scps:
            await echo_ready(scp)

        # -- (a) one study, four associations alternating between the SCPs ------------
        study_a = generate_uid()
        sops_a: list[str] = []
        for n in range(4):
            if n:
                await asyncio.sleep(1.0)  # paces the sender: gaps well under the timeout
            datasets = [
                make_ct(patient_id="PAT-A", study_uid=study_a, instance_number=2 * n + i)
                for i in (1, 2)
            ]
            await send(scps[n % 2], tmp_path / f"a{n}", datasets)
            sops_a += [str(ds.SOPInstanceUID) for ds in datasets]

        # -- (b) 20 studies in ten associations through both SCPs; a replica dies ----
        studies = {generate_uid(): f"PAT-{n % 7}" for n in range(STUDIES)}
        sops_b: dict[str, list[str]] = {}
        batches = list(studies.items())
        for n in range(0, STUDIES, 2):
            datasets = [
                make_ct(patient_id=patient, study_uid=study, instance_number=i)
                for study, patient in batches[n : n + 2]
                for i in (1, 2, 3)
            ]
            for ds in datasets:
                sops_b.setdefault(str(ds.StudyInstanceUID), []).append(str(ds.SOPInstanceUID))
            await send(scps[(n // 2) % 2], tmp_path / f"b{n}", datasets)
            if n == 6:  # mid-stream: kill one replica, start another
                await cluster.kill(processors[0])
                assert processors[0].proc.returncode == -signal.SIGKILL
                processors.append(await cluster.start("process", "processor-c"))
            await asyncio.sleep(0.3)  # paces the sender
        last_sent = time.monotonic()

        every_sop = set(sops_a) | {s for sops in sops_b.values() for s in sops}
        records = await wait_for_ledger(
            kafka_bootstrap,
            jobs_topic,
            _everything_submitted(every_sop),
            timeout_s=60,
            alive=cluster.alive,
        )
        # A duplicate or split group would be written within the timeout (plus grace)
        # after the last instance: wait that long, then read the ledger once more.
        while time.monotonic() < last_sent + SETTLE_S:
            cluster.alive()
            await asyncio.sleep(0.2)
        records = await wait_for_ledger(kafka_bootstrap, jobs_topic, lambda rs: True)

        # -- exactly once ---------------------------------------------------------------
        groups = _jobs(records)
        expected = {study_a: sorted(sops_a), **{k: sorted(v) for k, v in sops_b.items()}}
        assert sorted(g.group_key for g in groups) == sorted(expected), "a study split/merged"
        for group in groups:
            assert sorted(i.sop_instance_uid for i in group.instances) == expected[group.group_key]
            assert [j.pipeline_name for j in group.jobs] == list(PIPELINES)
        job_ids = [j.job_id for g in groups for j in g.jobs]
        assert len(job_ids) == len(set(job_ids)) == 2 * (STUDIES + 1), "a job id twice"
        submitted = collections.Counter(_submitted(records))
        assert set(submitted) == set(job_ids)
        assert set(submitted.values()) == {1}, "a job submitted twice"

        # -- /metrics -------------------------------------------------------------------
        for scp in scps:
            scraped = await scrape(scp.url)
            sent = len(scp.sent)
            assert sent > 0
            assert scraped.get(f"{NS}instances_received_total") == sent, scp.name
            assert scraped.get(f"{NS}instances_stored_total") == sent, scp.name
            assert scraped.get(f"{NS}instances_published_total") == sent, scp.name
            assert scraped.get(f"{NS}instances_refused_total", 0.0) == 0.0, scp.name
            assert scraped.get(f"{NS}outbox_pending_bytes") == 0.0, scp.name

        for replica in processors[1:]:

            async def closed(url: str = replica.url) -> bool:
                cluster.alive()
                return (await scrape(url)).get(f"{NS}open_groups", -1.0) == 0.0

            await poll(f"{replica.name} open groups back to 0", closed)
            scraped = await scrape(replica.url)
            assert scraped.get(f"{NS}instances_ignored_total", 0.0) == 0.0

        status, _ = await poll_readyz(processors[-1].url, lambda s, b: s == 200)
        scraped = await scrape(submitter.url)
        assert scraped.get(f"{NS}jobs_total") == len(job_ids)
        assert scraped.get(f"{NS}submit_attempts_total") == len(job_ids)

        # The reclaimer (in the submit process) deletes each group's files once its jobs
        # are submitted; its byte counter matches what its instances.removed events say
        # (0 here: the staged payloads still hard-link the files until the payload sweep).
        async def reclaimed() -> bool:
            cluster.alive()
            ledger = await wait_for_ledger(kafka_bootstrap, jobs_topic, lambda rs: True)
            removed = [
                r.envelope.data for r in ledger if isinstance(r.envelope.data, InstancesRemoved)
            ]
            gone = {uid for event in removed for uid in event.sop_instance_uids}
            freed = sum(event.bytes_freed for event in removed)
            counted = (await scrape(submitter.url)).get(f"{NS}reclaimed_bytes_total", 0.0)
            return gone >= every_sop and counted == freed

        await poll("every instance file reclaimed and counted", reclaimed)

        # -- clean stop, JSON logs ------------------------------------------------------
        survivors = cluster.current()
        for role in survivors:
            role.proc.send_signal(signal.SIGTERM)
        for role in survivors:
            code = await asyncio.wait_for(role.proc.wait(), 60)
            assert code == 0, f"{role.name}:\n{role.log.read_text()[-3000:]}"
    finally:
        await cluster.kill_all()
        if not holder.release.is_set():
            holder.release.set()
        await member.stop()

    expected_role: Mapping[str, str] = {
        "scp-1": "scp", "scp-2": "scp", "processor-b": "process",
        "processor-c": "process", "submitter": "submit",
    }  # fmt: skip
    for role in survivors:
        text = role.log.read_text()
        assert "Traceback" not in text, text[-3000:]
        assert "PAT-" not in text, f"PHI in the log of {role.name}"
        for record in _json_lines(role.log):
            assert record["adapter_id"] == role.name, record
            assert record["role"] == expected_role[role.name], record
    submitter_lines = _json_lines(submitter.log)
    assert {r.get("job_id") for r in submitter_lines} >= set(job_ids)
