"""Storage reclaim on a real broker: a submitted study's folder goes, an open one stays.

Uses the default ``kafka`` platform (``job.submitted`` is the hand-off), so every job is
submitted on its first attempt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from processors.submit import KafkaPlatform
from streams.events import GroupInstance, InstancesRemoved, JobSubmitted
from tests.helpers.jobs import group_closed, write_instances
from tests.helpers.submitter import of_type, publish, running_submitter
from tests.helpers.waiting import wait_for_ledger

pytestmark = pytest.mark.kafka
KEY = "AET1/PAT1"


def existing(instances: list[GroupInstance]) -> int:
    return sum(os.path.exists(i.uri) for i in instances)


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


async def test_a_submitted_study_is_reclaimed_and_an_open_one_untouched(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    topic = f"{prefix}.jobs"
    storage = tmp_path / "storage"
    study_a = write_instances(storage, study="1.2.840.1", series=("1.2.840.1.1", "1.2.840.1.2"))
    study_b = write_instances(storage, study="1.2.840.2", per_series=3)
    ignored = write_instances(storage, study="1.2.840.3", per_series=1)
    before_b = tree(storage / "AET1" / "1.2.840.2")
    async with running_submitter(kafka_bootstrap, topic, storage, KafkaPlatform(), group=prefix):
        (closed_a,) = await publish(
            kafka_bootstrap,
            topic,
            [(KEY, group_closed(study_a, jobs=[("lung-a", "normal"), ("heart-a", "higher")]))],
        )
        # what a processor writes for instances it skipped: a group without jobs
        (closed_ignored,) = await publish(
            kafka_bootstrap, topic, [(KEY, group_closed(ignored, jobs=[], reason="ignored"))]
        )
        records = await wait_for_ledger(
            kafka_bootstrap, topic, lambda rs: len(of_type(rs, "instances.removed")) == 2
        )

    submitted = [e.data for e in of_type(records, "job.submitted")]
    assert sorted(s.job_id for s in submitted if isinstance(s, JobSubmitted)) == [
        "heart-a",
        "lung-a",
    ]
    removed = {
        e.data.group_event_id: e.data
        for e in of_type(records, "instances.removed")
        if isinstance(e.data, InstancesRemoved)
    }
    done = removed[closed_a.id]
    assert sorted(done.sop_instance_uids) == sorted(i.sop_instance_uid for i in study_a)
    assert sorted(done.uris) == sorted(i.uri for i in study_a)
    assert sorted(done.job_ids) == ["heart-a", "lung-a"]
    assert (done.reason, done.ae_title) == ("submitted", "AET1")
    assert done.bytes_freed == 0  # the payloads still hold hard links of every file
    skipped = removed[closed_ignored.id]
    assert skipped.reason == "ignored" and skipped.uris == (ignored[0].uri,)

    assert not (storage / "AET1" / "1.2.840.1").exists()
    assert not (storage / "AET1" / "1.2.840.3").exists()
    assert existing(study_a) == 0
    assert existing(study_b) == len(study_b)
    assert tree(storage / "AET1" / "1.2.840.2") == before_b
    # each job has its own complete payload in the Clara layout
    for job in ("lung-a", "heart-a"):
        files = sorted((storage / "payloads" / job / "dcm" / "PAT1").rglob("*.dcm"))
        assert [f.stem for f in files] == sorted(i.sop_instance_uid for i in study_a)
    # the hand-off event points into the payload, not at the reclaimed files
    for event in submitted:
        assert isinstance(event, JobSubmitted)
        assert all(i.uri.startswith(event.payload_uri + "/dcm/") for i in event.instances)


async def test_payload_folders_expire_after_retention(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    topic = f"{prefix}.jobs"
    storage = tmp_path / "storage"
    instances = write_instances(storage, per_series=2, size=100)
    async with running_submitter(
        kafka_bootstrap, topic, storage, KafkaPlatform(), group=prefix, retention_s=0.5
    ):
        await publish(
            kafka_bootstrap, topic, [(KEY, group_closed(instances, jobs=[("j", "lower")]))]
        )
        records = await wait_for_ledger(
            kafka_bootstrap, topic, lambda rs: len(of_type(rs, "instances.removed")) == 2
        )
    expired = [
        e.data
        for e in of_type(records, "instances.removed")
        if isinstance(e.data, InstancesRemoved) and e.data.reason == "payload_expired"
    ]
    assert len(expired) == 1 and expired[0].job_ids == ("j",)
    assert expired[0].bytes_freed == 200  # the payload held the last links by then
    assert sorted(expired[0].sop_instance_uids) == sorted(i.sop_instance_uid for i in instances)
    assert not (storage / "payloads" / "j").exists()
    assert not (storage / "AET1").exists()
