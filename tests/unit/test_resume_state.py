"""A partition that comes back after another owner had it starts from a clean slate
(issue 13): the followers resume from the committed offset, so anything this process
still knew of the partition may be stale -- a job the other owner submitted must not be
submitted again, a group it reclaimed must not pin the commit."""

from __future__ import annotations

from pathlib import Path

from processors.reclaim import ReclaimService
from processors.submit import KafkaPlatform, RetryPolicy, SubmitService
from streams.events import GroupInstance, JobSubmitted
from tests.helpers.jobs import env, group_closed
from tests.unit.test_payload_retention import Recorder

KEY = "AET1/PAT1"
FILES = (GroupInstance("1.2.3.1", "1.2.3", "1.2.3.1", "/st/AET1/1.2.3/1.2.3.1/1.2.3.1.dcm"),)


def _submitted(job_id: str) -> JobSubmitted:
    return JobSubmitted(job_id, "n", "AET1", "p", "pid", "normal", "/st/payloads/j", FILES, 1)


async def test_the_submitter_forgets_a_partition_it_gave_away(tmp_path: Path) -> None:
    service = SubmitService(
        storage=tmp_path, platform=KafkaPlatform(), publisher=Recorder(), topic="t.jobs",
        policy=RetryPolicy(), source="test",
    )  # fmt: skip
    service.assigned(frozenset({0}))
    service.record(0, 5, KEY, env(group_closed(FILES, jobs=[("j", "normal")]), 1, "g"))
    service.caught_up(0)
    assert "j" in service.queue and service.committable(0) == 5
    await service.revoked(frozenset({0}))
    assert service.ledger.get("j") is None and "j" not in service.queue
    # back, from the other owner's commit: past the group.closed and its job.submitted
    service.assigned(frozenset({0}))
    service.caught_up(0)
    assert "j" not in service.queue and service.ledger.get("j") is None  # not sent again
    service.record(0, 7, KEY, env(group_closed(FILES, jobs=[("k", "normal")]), 3, "h"))
    assert service.committable(0) == 7  # its own open job, not the stale one at 5


async def test_the_reclaimer_forgets_a_partition_it_gave_away(tmp_path: Path) -> None:
    service = ReclaimService(
        storage=tmp_path, publisher=Recorder(), topic="t.jobs", source="test",
        payload_retention_s=3600.0,
    )  # fmt: skip
    service.assigned(frozenset({0}))
    service.record(0, 5, KEY, env(group_closed(FILES, jobs=[("j", "normal")]), 1, "g"))
    service.record(0, 6, KEY, env(_submitted("j"), 2))
    assert service.ledger.groups and service.committable(0) == 5  # the open group holds it
    await service.revoked(frozenset({0}))
    assert service.ledger.groups == {} and not service.ledger.payload_pending("j")
    service.assigned(frozenset({0}))
    service.caught_up(0)
    assert list(service.ledger.ready()) == []
    assert service.committable(0) is None  # nothing folded yet: no position
    service.record(0, 9, KEY, env(group_closed((), jobs=[("k", "lower")]), 3, "h"))
    assert service.committable(0) == 9  # its own open group, not the stale one at 5
