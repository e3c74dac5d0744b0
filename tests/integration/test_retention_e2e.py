"""Payload retention end to end (issue 13): DCMTK storescu -> ``dicom-adapter run`` -> Kafka.

With ``payload_retention_hours: 0`` nothing of a submitted and reclaimed group is left
on disk and ``instances.removed`` says how many bytes that freed; with a small retention
the payload is there until it expires, then gone, and the expiry frees the bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.adapter_run import running_adapter
from helpers.dicom import make_ct
from helpers.waiting import wait_for
from pydicom.uid import generate_uid

from streams.events import Envelope, InstancesRemoved, JobSubmitted
from streams.kafka import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.dicom, pytest.mark.slow]

RETENTION_H = 0.0012  # 4.32 s


def _events(bootstrap: str, topic: str) -> list[Envelope]:
    return [r.envelope for r in asyncio.run(read_topic(bootstrap, topic, timeout_s=10))]


def _ledger(
    bootstrap: str, topic: str, done: Callable[[list[Envelope]], bool], timeout_s: float = 60
) -> list[Envelope]:
    found: list[Envelope] = []

    def check() -> bool:
        nonlocal found
        found = _events(bootstrap, topic)
        return done(found)

    wait_for(check, f"the ledger of {topic}", timeout_s=timeout_s)
    return found


def _removed(events: list[Envelope], reason: str) -> list[InstancesRemoved]:
    return [
        e.data for e in events if isinstance(e.data, InstancesRemoved) and e.data.reason == reason
    ]


def _submitted(events: list[Envelope]) -> list[tuple[Envelope, JobSubmitted]]:
    return [(e, e.data) for e in events if isinstance(e.data, JobSubmitted)]


def _study(patient: str, count: int) -> list[object]:
    study = generate_uid()
    return [make_ct(patient_id=patient, study_uid=study, instance_number=i) for i in range(count)]


def test_retention_zero_leaves_no_file_and_reports_the_bytes_freed(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    extra = "submitter:\n  payload_retention_hours: 0\n"
    with running_adapter(tmp_path, kafka_bootstrap, unique_name("ret0"), extra) as run:
        sent = run.send(tmp_path / "in", _study("RET-0", 3))  # type: ignore[arg-type]
        events = _ledger(
            kafka_bootstrap, run.jobs_topic, lambda evs: bool(_removed(evs, "submitted"))
        )
        (removed,) = _removed(events, "submitted")
        ((_, job),) = _submitted(events)
        assert removed.job_ids == (job.job_id,)
        assert len(removed.sop_instance_uids) == 3
        # every byte the adapter stored for the group came back: the files' last links
        stored = sum(p.stat().st_size for p in sent)  # what storescu sent (Part 10 files)
        assert removed.bytes_freed >= stored * 0.9, (removed.bytes_freed, stored)
        assert sorted(run.storage.rglob("*.dcm")) == []
        assert not Path(job.payload_uri).exists()


def test_a_small_retention_keeps_the_payload_until_it_expires(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    extra = f"submitter:\n  payload_retention_hours: {RETENTION_H}\n"
    with running_adapter(tmp_path, kafka_bootstrap, unique_name("ret1"), extra) as run:
        run.send(tmp_path / "in", _study("RET-1", 2))  # type: ignore[arg-type]
        payloads = run.storage / "payloads"

        def staged() -> list[Path]:
            return sorted(payloads.rglob("*.dcm")) if payloads.exists() else []

        # the payload appears (staged before job.submitted) and is complete
        wait_for(lambda: len(staged()) == 2, "the payload is staged", timeout_s=60)
        seen_at = time.time()
        events = _ledger(
            kafka_bootstrap, run.jobs_topic, lambda evs: bool(_removed(evs, "payload_expired"))
        )
        ((submitted_env, job),) = _submitted(events)
        (expired,) = _removed(events, "payload_expired")
        # it was there before it expired ...
        assert seen_at * 1000 < submitted_env.time + RETENTION_H * 3_600_000
        # ... the instance files went at submission, the payload held the last links ...
        (at_submission,) = _removed(events, "submitted")
        assert at_submission.bytes_freed == 0
        # ... and it is gone after, with its bytes
        assert expired.job_ids == (job.job_id,)
        assert expired.bytes_freed > 0
        assert staged() == []
        assert sorted(run.storage.rglob("*.dcm")) == []
        (expired_env,) = [
            e for e in events if isinstance(e.data, InstancesRemoved) and e.data is expired
        ]
        assert expired_env.time >= submitted_env.time + RETENTION_H * 3_600_000
