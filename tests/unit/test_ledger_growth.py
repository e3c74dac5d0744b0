"""Regressions found by the load test (tests/load/): the submit process grew by ~10 MiB
per 10,000 instances, round after round, because its ledger folds kept per-instance
data of jobs that were finished with:

* the submitter's ``JobLedger`` kept every submitted job's instances (a
  ``GroupInstance`` with four strings each, ~0.8 KB per instance);
* the reclaimer's ``ReclaimLedger`` kept every submitted job's SOP Instance UIDs for a
  payload expiry that, with ``payload_retention_hours: never``, never comes,
  and kept them after the payload had expired too.

The auditor's fold (``dicom-adapter jobs``) still shows everything.
"""

from __future__ import annotations

from pathlib import Path

from processors.reclaim import ReclaimLedger, ReclaimService
from processors.submit import JobLedger, KafkaPlatform, RetryPolicy, SubmitService, fold
from streams.events import Envelope, GroupInstance, InstancesRemoved, JobFailed, JobSubmitted
from streams.kafka import EventPublisher
from tests.helpers.jobs import env, group_closed

KEY = "AET1/PAT1"
INSTANCES = tuple(
    GroupInstance(f"1.2.3.{n}", "1.2.3", "1.2.3.1", f"/st/AET1/1.2.3/1.2.3.1/1.2.3.{n}.dcm")
    for n in range(3)
)


def _submitted(job_id: str, payload: str = "") -> JobSubmitted:
    return JobSubmitted(job_id, "n", "AET1", "p0", "pid", "normal", payload, INSTANCES, 1)


def _history() -> list[tuple[str, Envelope]]:
    gc = group_closed(INSTANCES, jobs=[("a", "normal"), ("b", "normal")])
    return [
        (KEY, env(gc, 1_000, "g1")),
        (KEY, env(_submitted("a", "/st/payloads/a"), 2_000)),
        (KEY, env(JobFailed("b", 1, "HTTP 503", True, 9_000), 3_000)),
    ]


def _publisher() -> EventPublisher:
    return EventPublisher("127.0.0.1:9")  # never started: these tests write nothing


def test_submitted_jobs_are_forgotten_but_for_their_id() -> None:
    ledger = JobLedger(compact=True)
    for key, e in _history():
        ledger.apply(key, e)
    b = ledger.get("b")
    assert ledger.get("a") is None and len(ledger) == 1
    assert b is not None and b.status == "failed" and b.instances == INSTANCES  # still needed
    # the echo of the group.closed and later events do not bring the submitted job back
    for key, e in _history():
        ledger.apply(key, e)
    assert ledger.get("a") is None and len(ledger) == 1


def test_the_window_of_forgotten_ids_is_bounded() -> None:
    ledger = JobLedger(compact=True, finished_window=2)
    for n in range(5):
        ledger.apply(KEY, env(group_closed(INSTANCES, jobs=[(f"j{n}", "normal")]), n, f"g{n}"))
        ledger.apply(KEY, env(_submitted(f"j{n}"), n))
    assert len(ledger) == 0 and ledger.recently_finished == ("j3", "j4")
    ledger.apply(KEY, env(group_closed(INSTANCES, jobs=[("j4", "normal")]), 9, "g4-copy"))
    assert len(ledger) == 0  # a copy of a recent group.closed changes nothing


def test_the_auditors_fold_still_shows_a_submitted_jobs_instances() -> None:
    a = fold(_history()).get("a")
    assert a is not None and a.status == "submitted" and a.instances == INSTANCES


def test_submitter_folds_the_ledger_without_instances_of_submitted_jobs(tmp_path: Path) -> None:
    service = SubmitService(
        storage=tmp_path,
        platform=KafkaPlatform(),
        publisher=_publisher(),
        topic="t.jobs",
        policy=RetryPolicy(),
        source="test",
    )
    service.assigned(frozenset({0}))  # history being read: nothing is scheduled
    for offset, (key, e) in enumerate(_history()):
        service.record(0, offset, key, e)
    assert service.ledger.get("a") is None
    b = service.ledger.get("b")
    assert b is not None and b.instances == INSTANCES
    assert service.committable(0) == 0  # b's group.closed is still needed


def test_reclaimer_keeps_no_sop_uids_of_submitted_jobs_without_payload_retention(
    tmp_path: Path,
) -> None:
    service = ReclaimService(
        storage=tmp_path, publisher=_publisher(), topic="t.jobs", source="test"
    )
    service.assigned(frozenset({0}))
    for offset, (key, e) in enumerate(_history()):
        service.record(0, offset, key, e)
    assert service.ledger.payload_uids_kept == 0
    assert service.ledger.expired_payloads(now_ms=10**12, retention_ms=1) == []


def test_expired_payloads_forget_their_sop_uids() -> None:
    ledger = ReclaimLedger(track_payloads=True)
    for key, e in _history():
        ledger.apply(key, e)
    assert ledger.payload_uids_kept == len(INSTANCES)
    (expired,) = ledger.expired_payloads(now_ms=10_000, retention_ms=5_000)
    assert expired.sop_instance_uids == tuple(i.sop_instance_uid for i in INSTANCES)
    removed = InstancesRemoved(
        expired.sop_instance_uids, (expired.payload_uri,), "payload_expired", job_ids=("a",)
    )
    ledger.apply(KEY, env(removed, 11_000))
    assert ledger.payload_uids_kept == 0
    assert ledger.expired_payloads(now_ms=20_000, retention_ms=5_000) == []
    ledger.apply(KEY, env(_submitted("a", "/st/payloads/a"), 2_000))  # an echo: still gone
    assert ledger.payload_uids_kept == 0


def test_the_reclaimer_forgets_reclaimed_groups_and_their_jobs() -> None:
    ledger = ReclaimLedger(track_payloads=False, window=3)
    for n in range(10):
        gc = group_closed(INSTANCES, jobs=[(f"j{n}", "normal")])
        ledger.apply(KEY, env(gc, n, f"g{n}"))
        (ready,) = ledger.apply(KEY, env(_submitted(f"j{n}"), n))
        ledger.apply(KEY, env(InstancesRemoved((), group_event_id=ready.group_id), n))
    assert ledger.groups == {} and ledger._submitted == {}
    assert ledger.recently_reclaimed == ("g7", "g8", "g9")
    # a repeated group.closed of a recent group does not come back to life
    assert ledger.apply(KEY, env(group_closed(INSTANCES, jobs=[("j9", "normal")]), 9, "g9")) == ()
    assert ledger.groups == {}
    # a job.submitted whose group was reclaimed before the history read keeps nothing
    ledger.apply(KEY, env(_submitted("from-before"), 11))
    assert ledger._submitted == {}
