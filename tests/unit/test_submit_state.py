"""The job ledger fold: replayable, idempotent, never moves a submitted job back."""

from __future__ import annotations

from processors.submit import JobLedger, fold
from streams.events import (
    InstancesRemoved,
    JobFailed,
    JobRetryRequested,
    JobSubmitted,
)
from tests.helpers.jobs import env, group_closed

KEY = "AET1/PAT1"


def _submitted(job_id: str, attempt: int, platform_id: str = "") -> JobSubmitted:
    return JobSubmitted(
        job_id=job_id,
        name="n",
        ae_title="AET1",
        pipeline_name="p0",
        pipeline_id="pipeline-0",
        priority="higher",
        payload_uri="/s/payloads/" + job_id,
        instances=(),
        attempt=attempt,
        platform_job_id=platform_id,
    )


def _history() -> list:
    gc = group_closed([], jobs=[("a", "higher"), ("b", "lower")])
    return [
        (KEY, env(gc, 1_000, "g1")),
        (KEY, env(JobFailed("a", 1, "HTTP 503", True, 3_000), 2_000)),
        (KEY, env(JobFailed("a", 2, "HTTP 503", True, 5_000), 4_000)),
        (KEY, env(_submitted("a", 3, "plat-7"), 6_000)),
        (KEY, env(JobFailed("b", 1, "HTTP 400: bad pipeline", False), 2_500)),
    ]


def test_fold_gives_state_attempts_priority_and_timings() -> None:
    ledger = fold(_history())
    a, b = ledger.get("a"), ledger.get("b")
    assert a is not None and b is not None
    assert (a.status, a.attempts, a.priority, a.platform_job_id) == (
        "submitted",
        3,
        "higher",
        "plat-7",
    )
    assert (a.queued_at, a.submitted_at, a.retry_at) == (1_000, 6_000, 0)
    assert a.key == KEY and a.group_event_id == "g1" and a.patient_id == "PAT1"
    assert [h.event for h in a.history] == [
        "group.closed",
        "job.failed",
        "job.failed",
        "job.submitted",
    ]
    assert (b.status, b.attempts, b.last_error, b.is_open) == (
        "dead",
        1,
        "HTTP 400: bad pipeline",
        False,
    )


def test_applying_every_event_twice_changes_nothing() -> None:
    history = list(_history())  # once: its records carry wall-clock received_at stamps
    once = fold(history)
    twice = JobLedger()
    for key, e in history:
        twice.apply(key, e)
        assert twice.apply(key, e) == ()  # the echo of an event already folded
    assert dict(once.jobs) == dict(twice.jobs)


def test_nothing_moves_a_submitted_job_back() -> None:
    ledger = fold(_history())
    assert ledger.apply(KEY, env(JobFailed("a", 4, "late zombie", False), 9_000)) == ()
    assert ledger.apply(KEY, env(JobRetryRequested("a"), 9_000)) == ()
    assert ledger.apply(KEY, env(_submitted("a", 9), 9_500)) == ()
    state = ledger.get("a")
    assert state is not None and state.status == "submitted" and state.attempts == 3


def test_failed_then_retrying_is_open_with_its_next_attempt_time() -> None:
    ledger = fold(_history()[:3])
    state = ledger.get("a")
    assert state is not None
    assert (state.status, state.attempts, state.retry_at, state.is_open) == (
        "failed",
        2,
        5_000,
        True,
    )


def test_retry_request_reopens_only_a_dead_job_and_starts_a_new_round() -> None:
    ledger = fold(_history())
    changed = ledger.apply(KEY, env(JobRetryRequested("b", "ops@host", "pipeline fixed"), 7_000))
    assert [s.job_id for s in changed] == ["b"]
    b = ledger.get("b")
    assert b is not None
    assert (b.status, b.attempts, b.round_start, b.attempts_in_round) == ("pending", 1, 1, 0)
    assert (b.pending_since, b.retry_requests) == (7_000, 1)
    # a second request while it is pending is a no-op
    assert ledger.apply(KEY, env(JobRetryRequested("b"), 7_100)) == ()
    # the next round's attempt counts on from the last one
    ledger.apply(KEY, env(JobFailed("b", 2, "HTTP 503", True, 9_000), 8_000))
    b = ledger.get("b")
    assert b is not None and (b.status, b.attempts, b.attempts_in_round) == ("failed", 2, 1)


def test_a_repeated_group_closed_does_not_reset_a_job() -> None:
    history = _history()
    ledger = fold(history)
    assert ledger.apply(KEY, history[0][1]) == ()
    assert ledger.apply(KEY, env(group_closed([], jobs=[("a", "lower")]), 9_999)) == ()
    a = ledger.get("a")
    assert a is not None and a.status == "submitted" and a.priority == "higher"


def test_events_for_unknown_jobs_are_kept_for_the_auditor() -> None:
    ledger = JobLedger()
    ledger.apply(KEY, env(JobFailed("x", 1, "boom", False), 10))
    ledger.apply(KEY, env(_submitted("y", 1), 20))
    x, y = ledger.get("x"), ledger.get("y")
    assert x is not None and x.status == "dead"
    assert y is not None and y.status == "submitted" and y.pipeline_id == "pipeline-0"


def test_instances_removed_marks_the_jobs_files_as_removed() -> None:
    ledger = fold(_history())
    ledger.apply(KEY, env(InstancesRemoved(("1.2",), job_ids=("a",), group_event_id="g1"), 8_000))
    ledger.apply(KEY, env(InstancesRemoved(("1.2",), job_ids=("b",), reason="payload_expired"), 1))
    a, b = ledger.get("a"), ledger.get("b")
    assert a is not None and a.files_removed_at == 8_000
    assert b is not None and b.files_removed_at == 0
