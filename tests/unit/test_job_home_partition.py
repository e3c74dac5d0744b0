"""A job's events live in the partition of its ``group.closed`` (its home), whatever the
key hashes to.

A processor fed by a rekeyed topic (a groupBy tag outside Patient/Study/Series) writes its
``group.closed`` to its input's partition under the group's patient key, which can hash to
another partition. The submitter and the reclaimer used to write the job's outcomes with
the key alone, so they landed elsewhere; after a restart the submitter folded an outcome
before its ``group.closed``, which it then skipped as a repeat, and the job was never
tried again (chaos seed 1000 in CI: "1 groups with jobs neither submitted nor dead").
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from processors.reclaim import ReclaimService
from processors.submit import JobLedger, KafkaPlatform, RetryPolicy, SubmitService
from streams.events import Envelope, GroupInstance, JobFailed, JobSubmitted
from tests.helpers.jobs import env, group_closed, write_instances

KEY = "AET1/PAT1"
HOME = 1  # the partition the group.closed was read from
FILES = (GroupInstance("1.2.3.1", "1.2.3", "1.2.3.1", "/st/AET1/1.2.3/1.2.3.1/1.2.3.1.dcm"),)


class Placed:
    """A publisher that keeps each event with the partition it was sent to."""

    def __init__(self) -> None:
        self.sent: list[tuple[int | None, Envelope]] = []
        self.arrived = asyncio.Event()

    async def publish(
        self, topic: str, key: str, env: Envelope, *, partition: int | None = None
    ) -> tuple[int, int]:
        self.sent.append((partition, env))
        self.arrived.set()
        return (partition if partition is not None else 0), len(self.sent) - 1

    async def publish_many(
        self, topic: str, items: object, *, partitions: object = None
    ) -> list[tuple[int, int]]:
        raise AssertionError("one event at a time")


def test_the_fold_keeps_the_partition_of_the_group_closed() -> None:
    ledger = JobLedger(compact=True)
    ledger.apply(KEY, env(group_closed(FILES, jobs=[("j", "normal")]), 1, "g"), HOME)
    ledger.apply(KEY, env(JobFailed("j", 1, "HTTP 503", True, 5), 2), 2)
    state = ledger.get("j")
    assert state is not None and state.partition == HOME and state.status == "failed"


def test_an_outcome_folded_before_its_group_closed_does_not_hide_the_job() -> None:
    """The ledgers written before the fix: the failure (another partition) comes first."""
    ledger = JobLedger(compact=True)
    ledger.apply(KEY, env(JobFailed("j", 1, "HTTP 503", True, 5), 2), 2)
    ledger.apply(KEY, env(group_closed(FILES, jobs=[("j", "normal")]), 1, "g"), HOME)
    state = ledger.get("j")
    assert state is not None
    assert state.group_event_id == "g"  # defined by its group.closed: it can be staged
    assert (state.status, state.attempts, state.retry_at) == ("failed", 1, 5)  # kept
    assert state.partition == HOME and state.instances == FILES


async def test_the_submitter_schedules_a_job_whose_failure_it_read_first(tmp_path: Path) -> None:
    service = SubmitService(
        storage=tmp_path, platform=KafkaPlatform(), publisher=Placed(), topic="t.jobs",
        policy=RetryPolicy(), source="test",
    )  # fmt: skip
    service.assigned(frozenset({HOME, 2}))
    service.record(2, 4, KEY, env(JobFailed("j", 1, "HTTP 503", True, 5), 2))
    service.caught_up(2)
    service.record(HOME, 0, KEY, env(group_closed(FILES, jobs=[("j", "normal")]), 1, "g"))
    service.caught_up(HOME)
    assert "j" in service.queue
    assert service.committable(HOME) == 0  # its group.closed stays uncommitted until done


async def test_the_submitter_writes_outcomes_to_the_home_partition(tmp_path: Path) -> None:
    files = tuple(write_instances(tmp_path))
    publisher = Placed()
    service = SubmitService(
        storage=tmp_path, platform=KafkaPlatform(), publisher=publisher, topic="t.jobs",
        policy=RetryPolicy(), source="test",
    )  # fmt: skip
    service.assigned(frozenset({0, HOME, 2}))
    for p in (0, HOME, 2):
        service.caught_up(p)
    service.record(HOME, 0, KEY, env(group_closed(files, jobs=[("j", "normal")]), 1, "g"))
    stop = asyncio.Event()
    worker = asyncio.create_task(service.run(stop))
    await asyncio.wait_for(publisher.arrived.wait(), 10)
    stop.set()
    await worker
    [(partition, sent)] = publisher.sent
    assert isinstance(sent.data, JobSubmitted) and partition == HOME


async def test_the_reclaimer_writes_removals_to_the_home_partition(tmp_path: Path) -> None:
    files = tuple(write_instances(tmp_path))
    publisher = Placed()
    service = ReclaimService(
        storage=tmp_path, publisher=publisher, topic="t.jobs", source="test",
        payload_retention_s=3600.0,
    )  # fmt: skip
    service.assigned(frozenset({HOME}))
    service.caught_up(HOME)
    service.record(HOME, 0, KEY, env(group_closed(files, jobs=[("j", "normal")]), 1, "g"))
    done = JobSubmitted("j", "n", "AET1", "p", "pid", "normal", "/st/payloads/j", files, 1)
    service.record(HOME, 1, KEY, env(done, 2))
    [group] = list(service.ledger.ready())
    removed = await service.reclaim(group, asyncio.Event())
    assert removed is not None and removed.sop_instance_uids
    assert [partition for partition, _ in publisher.sent] == [HOME]
