"""A lost cache database is rebuilt from the topics (real Kafka).

Instances of the AE title are published to a real instances topic; a job and a removal
are on the jobs topic. A processor starting without its database file must list exactly
the instances no ``group.closed`` consumed and whose file still exists.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.instances import RecordingSink, make_instance
from reactivex.testing import TestScheduler

from processors.cache import CacheProcessor, database_path
from processors.contracts import ProcessorContext
from processors.jobrecords import pipeline_job
from processors.reclaim import removal_request
from streams.events import InputOffset, InstanceReceived, envelope
from streams.kafka import EventPublisher, ensure_topics

pytestmark = pytest.mark.kafka

AE = "CACHE-RB"


def _instance(
    tmp: Path, n: int, study: str, *, ae: str = AE, file: bool = True
) -> InstanceReceived:
    path = tmp / "files" / f"{n}.dcm"
    if file:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"DICM")
    return make_instance(
        received_at=1_700_000_000_000 + n, ae=ae, patient="P1", study=study,
        sop=f"1.2.3.{n}", uri=str(path),
    )  # fmt: skip


async def test_rebuild_lists_what_no_group_consumed(
    tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    instances_topic, jobs_topic = unique_name("inst"), unique_name("jobs")
    await ensure_topics(kafka_bootstrap, {instances_topic: 1, jobs_topic: 1})
    items = [
        _instance(tmp_path, 0, "S-JOB"),
        _instance(tmp_path, 1, "S-JOB"),
        _instance(tmp_path, 2, "S-GONE"),
        _instance(tmp_path, 3, "S-KEEP"),
        _instance(tmp_path, 4, "S-KEEP"),
        _instance(tmp_path, 5, "S-NOFILE", file=False),
        _instance(tmp_path, 6, "S-OTHER", ae="OTHER-AE"),
    ]
    async with EventPublisher(kafka_bootstrap) as publisher:
        await publisher.publish_many(
            instances_topic,
            [(f"{i.called_ae}/P1", envelope(i, source="t", time_ms=i.received_at)) for i in items],
        )
        sched = TestScheduler()
        writer = CacheProcessor(AE, {"pipeline-x": "PX"}, RecordingSink(sched), sched)
        job = pipeline_job(
            "j", "PX", "normal", items[:2], processor=writer.name, ae_title=AE,
            inputs=[InputOffset(0, 0), InputOffset(0, 1)],
        )  # fmt: skip
        gone = removal_request(
            processor="x", ae_title=AE, instances=[items[2]], inputs=[InputOffset(0, 2)]
        )
        await publisher.publish_many(
            jobs_topic,
            [(f"{AE}/P1", envelope(r, source="t", time_ms=1)) for r in (job, gone)],
        )

    sched = TestScheduler()
    sink = RecordingSink(sched)
    proc = CacheProcessor(AE, {"pipeline-x": "PX"}, sink, sched)
    context = ProcessorContext(
        storage=tmp_path / "storage",
        adapter_id="t",
        kafka=kafka_bootstrap,
        instances_topic=instances_topic,
        jobs_topic=jobs_topic,
    )
    await proc.start(context)
    assert database_path(tmp_path / "storage", AE).is_file()
    assert [s.study_instance_uid for s in proc.store.studies().items] == ["S-KEEP"]
    assert proc.store.overview().instances == 2
    assert {proc.store.state_of(f"1.2.3.{n}") for n in (0, 1, 2, 5)} == {"released"}
    assert proc.store.state_of("1.2.3.6") is None  # another AE title's
    # The runtime then replays from its committed offset: nothing comes back.
    for offset, item in enumerate(items[:6]):
        proc.on_next((0, offset, item))
    assert [s.study_instance_uid for s in proc.store.studies().items] == ["S-KEEP"]
    assert sink.records == [] and sink.removed == []
    proc.on_completed()

    # A complete database is not rebuilt again (the broker is not even asked).
    again = CacheProcessor(AE, {"pipeline-x": "PX"}, RecordingSink(sched), sched)
    unreachable = ProcessorContext(
        storage=tmp_path / "storage", kafka="127.0.0.1:1", instances_topic="x",
        jobs_topic="y",
    )  # fmt: skip
    await again.start(unreachable)
    assert again.store.overview().instances == 2
