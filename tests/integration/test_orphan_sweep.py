"""The orphan sweeper end to end (issue 13): ``dicom-adapter run`` on a real broker.

A file planted under storage -- what an SCP killed between the file's fsync and its
event leaves -- is removed once older than the grace period, and reported as
``instances.removed`` with ``reason="orphan"``; a file just as old that a real C-STORE
(DCMTK storescu) announced on the instances topic stays, its group still open.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import TopicPartition
from helpers.adapter_run import running_adapter
from helpers.dicom import make_ct
from helpers.waiting import wait_for

from processors.reclaim import OrphanSweeper
from streams.events import InstancesRemoved, JobRetryRequested, RecordKeys, envelope
from streams.kafka import EventPublisher, Record, ensure_topics, read_topic
from streams.storage import sanitize_component
from tests.helpers.jobs import write_instances

pytestmark = [pytest.mark.kafka, pytest.mark.dicom, pytest.mark.slow]

GRACE_H = 0.0005  # 1.8 s


def _orphan_events(bootstrap: str, topic: str) -> list[Record]:
    records = asyncio.run(read_topic(bootstrap, topic, timeout_s=10))
    return [
        r
        for r in records
        if isinstance(r.envelope.data, InstancesRemoved) and r.envelope.data.reason == "orphan"
    ]


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_planted_orphan_is_removed_after_the_grace_and_an_announced_file_stays(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    extra = f"submitter:\n  orphan_grace_hours: {GRACE_H}\n"
    prefix = unique_name("orph")
    with running_adapter(tmp_path, kafka_bootstrap, prefix, extra, timeout_s=60) as run:
        real = make_ct(patient_id="ORPH-REAL", instance_number=1)
        run.send(tmp_path / "in", [real])
        real_file = (
            run.storage
            / run.ae_title
            / sanitize_component(str(real.StudyInstanceUID))
            / sanitize_component(str(real.SeriesInstanceUID))
            / f"{sanitize_component(str(real.SOPInstanceUID))}.dcm"
        )
        assert real_file.exists()
        _age(real_file, 3600)  # as old as an orphan: only its event tells them apart

        orphan = make_ct(patient_id="ORPH-LOST", instance_number=1)
        orphan_file = (
            run.storage / run.ae_title / str(orphan.StudyInstanceUID)
            / str(orphan.SeriesInstanceUID) / f"{orphan.SOPInstanceUID}.dcm"
        )  # fmt: skip
        orphan_file.parent.mkdir(parents=True)
        orphan.save_as(orphan_file, enforce_file_format=True)
        size = orphan_file.stat().st_size
        _age(orphan_file, 3600)

        found: list[Record] = []

        def reported() -> bool:
            nonlocal found
            found = _orphan_events(kafka_bootstrap, run.jobs_topic)
            return bool(found)

        wait_for(reported, "an orphan is reported", timeout_s=30)
        assert not orphan_file.exists()
        assert not orphan_file.parent.exists()  # the folders it left empty went too
        assert real_file.exists()  # announced on the instances topic: not an orphan
        (record,) = found
        removed = record.envelope.data
        assert isinstance(removed, InstancesRemoved)
        assert removed.uris == (str(orphan_file),)
        assert removed.sop_instance_uids == (str(orphan.SOPInstanceUID),)
        assert (removed.ae_title, removed.bytes_freed) == (run.ae_title, size)
        assert record.key == RecordKeys()(run.ae_title, "ORPH-LOST")  # keyed like its instance
    # the real file was never reported, however many sweeps ran meanwhile
    assert [r.envelope.data.uris for r in _orphan_events(kafka_bootstrap, f"{prefix}.jobs")] == [
        (str(orphan_file),)
    ]


async def test_a_file_older_than_what_retention_kept_is_not_taken_for_an_orphan(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """The sweeper cannot prove an orphan whose event retention may have deleted: with
    the log cut (as retention cuts it), an old unannounced file stays; on an uncut log
    the same file goes."""
    prefix = unique_name("cut")
    instances, jobs = f"{prefix}.instances", f"{prefix}.jobs"
    await ensure_topics(kafka_bootstrap, {instances: 1, jobs: 1})
    storage = tmp_path / "storage"
    (old,) = write_instances(storage, ae="CT", per_series=1)
    then = time.time() - 3600
    os.utime(old.uri, (then, then))
    filler = envelope(JobRetryRequested("x"), source="t", time_ms=int(time.time() * 1000))
    async with EventPublisher(kafka_bootstrap) as publisher:
        for _ in range(3):
            await publisher.publish(instances, "CT/x", filler)  # something retention can cut
        sweeper = OrphanSweeper(
            storage=storage, kafka=kafka_bootstrap, instances_topic=instances,
            publisher=publisher, jobs_topic=jobs, source="t", keys=RecordKeys(), grace_s=60,
        )  # fmt: skip
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_records({TopicPartition(instances, 0): RecordsToDelete(2)})
        finally:
            await admin.close()
        assert await sweeper.sweep(asyncio.Event()) == []
        assert os.path.exists(old.uri)  # noqa: ASYNC240
        uncut = OrphanSweeper(
            storage=storage, kafka=kafka_bootstrap, instances_topic=jobs,
            publisher=publisher, jobs_topic=jobs, source="t", keys=RecordKeys(), grace_s=60,
        )  # fmt: skip  # an empty, uncut topic: nothing announces the file
        (removed,) = await uncut.sweep(asyncio.Event())
    assert removed.uris == (old.uri,) and removed.reason == "orphan"
    assert not os.path.exists(old.uri)  # noqa: ASYNC240
