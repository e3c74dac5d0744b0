"""Submitter and reclaimer resume from their committed offsets (issue 13): the commit
never passes the oldest record of work still to do, so a restart reads the open work --
here one dead-lettered job -- not the history, and that work is still done right."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from processors.submit import KafkaPlatform
from streams.events import InstancesRemoved, JobFailed, JobRetryRequested, JobSubmitted
from streams.kafka import ensure_topics
from tests.helpers.jobs import group_closed, write_instances
from tests.helpers.submitter import of_type, publish, running_submitter
from tests.helpers.waiting import committed_offsets, wait_for_ledger, wait_until

pytestmark = pytest.mark.kafka
KEY = "AET1/PAT1"


async def test_a_restart_reads_from_the_oldest_open_work_and_finishes_it(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("resume")
    topic = f"{prefix}.jobs"
    storage = tmp_path / "storage"
    lost = write_instances(storage, study="1.2.840.20", per_series=2)
    kept = {i.uri: b"D" * 64 for i in lost}  # what write_instances wrote
    for instance in lost:  # staging fails for good: the job is dead-lettered
        os.unlink(instance.uri)
    done = [write_instances(storage, study=f"1.2.840.1{n:02d}", per_series=1) for n in range(20)]
    history = [
        (KEY, group_closed(files, jobs=[(f"old-{n}", "normal")])) for n, files in enumerate(done)
    ]
    async with running_submitter(kafka_bootstrap, topic, storage, KafkaPlatform(), group=prefix):
        await publish(kafka_bootstrap, topic, history)
        await wait_for_ledger(
            kafka_bootstrap, topic, lambda rs: len(of_type(rs, "instances.removed")) == 20
        )
        envs = await publish(
            kafka_bootstrap, topic, [(KEY, group_closed(lost, jobs=[("dead", "normal")]))]
        )
        records = await wait_for_ledger(
            kafka_bootstrap,
            topic,
            lambda rs: any(
                isinstance(e.data, JobFailed) and not e.data.will_retry
                for e in of_type(rs, "job.failed")
            ),
        )
    (partition,) = {r.partition for r in records}
    tp = TopicPartition(topic, partition)
    # the dead-lettered job's group.closed (after the 20 done) holds both commits back
    first = next(r.offset for r in records if r.envelope.id == envs[-1].id)
    assert first == 60  # 20 x (group.closed, job.submitted, instances.removed) before it
    for role in ("submit", "reclaim"):
        assert (await committed_offsets(kafka_bootstrap, f"{prefix}.{role}"))[tp] == first

    # an operator restores the files and retries; a new submitter resumes from the commit
    for uri, data in kept.items():
        Path(uri).write_bytes(data)  # noqa: ASYNC240
        past = time.time() - 3600  # as received before the group closed
        os.utime(uri, (past, past))
    await publish(kafka_bootstrap, topic, [(KEY, JobRetryRequested("dead", "test"))])
    async with running_submitter(
        kafka_bootstrap, topic, storage, KafkaPlatform(), group=prefix
    ) as harness:
        records = await wait_for_ledger(
            kafka_bootstrap,
            topic,
            lambda rs: any(
                isinstance(e.data, InstancesRemoved) and e.data.job_ids == ("dead",)
                for e in of_type(rs, "instances.removed")
            ),
        )
        reclaimer = harness.reclaimer
        assert reclaimer is not None
        await wait_until(lambda: not reclaimer.ledger.groups, "the reclaimer is idle")
        # nothing of the 20 finished groups was folded again: only the dead job's
        assert harness.submitter.ledger.recently_finished == ("dead",)
        assert reclaimer.ledger.recently_reclaimed == (envs[-1].id,)
    submitted = [e.data for e in of_type(records, "job.submitted")]
    assert sum(isinstance(s, JobSubmitted) and s.job_id == "dead" for s in submitted) == 1
    left = [i.uri for files in [lost, *done] for i in files if os.path.exists(i.uri)]  # noqa: ASYNC240
    assert left == []
    end = max(r.offset for r in records if r.partition == partition) + 1
    for role in ("submit", "reclaim"):  # nothing open any more: both committed to the end
        assert (await committed_offsets(kafka_bootstrap, f"{prefix}.{role}"))[tp] == end


async def test_a_commit_of_an_older_version_is_not_resumed_from(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """Upgrading with data in place: an older version committed past dead letters; the
    new followers read such a partition from its beginning once, so `jobs retry` of a
    job dead-lettered before the upgrade still works."""
    prefix = unique_name("upgrade")
    topic = f"{prefix}.jobs"
    storage = tmp_path / "storage"
    files = write_instances(storage, study="1.2.840.30", per_series=2)
    await ensure_topics(kafka_bootstrap, {topic: 1})
    await publish(
        kafka_bootstrap,
        topic,
        [
            (KEY, group_closed(files, jobs=[("dead-before", "normal")])),
            (KEY, JobFailed("dead-before", 1, "platform refused", False)),
        ],
    )
    tp = TopicPartition(topic, 0)
    for role in ("submit", "reclaim"):  # what the older version committed: the end, plainly
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap, group_id=f"{prefix}.{role}", enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.commit({tp: 2})
        finally:
            await consumer.stop()
    await publish(kafka_bootstrap, topic, [(KEY, JobRetryRequested("dead-before", "test"))])
    async with running_submitter(kafka_bootstrap, topic, storage, KafkaPlatform(), group=prefix):
        records = await wait_for_ledger(
            kafka_bootstrap,
            topic,
            lambda rs: (
                bool(of_type(rs, "job.submitted")) and bool(of_type(rs, "instances.removed"))
            ),
        )
    (submitted,) = [e.data for e in of_type(records, "job.submitted")]
    assert isinstance(submitted, JobSubmitted) and submitted.job_id == "dead-before"
    end = max(r.offset for r in records) + 1
    for role in ("submit", "reclaim"):  # and now resumable commits
        assert (await committed_offsets(kafka_bootstrap, f"{prefix}.{role}"))[tp] == end
