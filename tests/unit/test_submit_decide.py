"""Outcome → ledger event, and the HTTP answer → outcome mapping (both pure)."""

from __future__ import annotations

import httpx
import pytest

from processors.submit import (
    PlatformJob,
    RetryPolicy,
    SubmitOutcome,
    decide,
    outcome_of,
    retry_after_s,
)
from streams.events import GroupInstance, JobFailed, JobSubmitted

JOB = PlatformJob(
    job_id="job-1",
    name="aet1-lung-20240101000000",
    ae_title="AET1",
    pipeline_name="lung",
    pipeline_id="8abf",
    priority="higher",
    payload_uri="/data/payloads/job-1",
    instances=(GroupInstance("1.2", "1.3", "1.4", "/data/payloads/job-1/dcm/P/1.3/1.4/1.2.dcm"),),
    attempt=2,
    group_key="1.3",
)
POLICY = RetryPolicy(max_attempts=3, initial_s=1.0, max_s=8.0)


def test_submitted_becomes_job_submitted_with_the_platform_id() -> None:
    decision = decide(
        JOB, SubmitOutcome.submitted("p-9"), attempts_in_round=2, policy=POLICY, now_ms=0,
        rand=lambda: 0.5,
    )  # fmt: skip
    assert decision.retry_delay_s is None
    event = decision.event
    assert isinstance(event, JobSubmitted)
    assert (event.platform_job_id, event.attempt, event.payload_uri) == ("p-9", 2, JOB.payload_uri)
    assert event.instances == JOB.instances and event.priority == "higher"


def test_retriable_within_the_round_schedules_the_next_attempt() -> None:
    decision = decide(
        JOB, SubmitOutcome.retriable("HTTP 503"), attempts_in_round=2, policy=POLICY,
        now_ms=10_000, rand=lambda: 0.5,
    )  # fmt: skip
    assert decision.retry_delay_s == 1.0  # 0.5 x min(8, 1 x 2^1)
    assert decision.event == JobFailed("job-1", 2, "HTTP 503", True, 11_000)


def test_retriable_at_the_end_of_the_round_dead_letters() -> None:
    decision = decide(
        JOB, SubmitOutcome.retriable("HTTP 503"), attempts_in_round=3, policy=POLICY,
        now_ms=10_000, rand=lambda: 0.5,
    )  # fmt: skip
    assert decision.retry_delay_s is None
    assert isinstance(decision.event, JobFailed)
    assert decision.event.will_retry is False and decision.event.retry_at == 0
    assert "gave up after 3 attempts" in decision.event.error


def test_permanent_dead_letters_at_once() -> None:
    decision = decide(
        JOB, SubmitOutcome.permanent("HTTP 400: unknown pipeline"), attempts_in_round=1,
        policy=POLICY, now_ms=0, rand=lambda: 0.5,
    )  # fmt: skip
    assert decision.event == JobFailed("job-1", 2, "HTTP 400: unknown pipeline", False, 0)


def test_job_json_carries_the_contract_fields() -> None:
    body = JOB.to_json()
    assert set(body) >= {
        "job_id", "name", "pipeline_id", "priority", "payload_uri", "instances", "ae_title",
    }  # fmt: skip
    assert body["instances"][0]["uri"].startswith("/data/payloads/job-1/")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, "submitted"),
        (201, "submitted"),
        (202, "submitted"),
        (400, "permanent"),
        (401, "permanent"),
        (404, "permanent"),
        (422, "permanent"),
        (408, "retriable"),
        (409, "retriable"),
        (429, "retriable"),
        (500, "retriable"),
        (502, "retriable"),
        (503, "retriable"),
        (504, "retriable"),
        (301, "permanent"),
    ],
)
def test_status_mapping(status: int, kind: str) -> None:
    assert outcome_of(status, httpx.Headers(), b"").kind == kind


def test_platform_job_id_is_taken_from_job_id_or_id() -> None:
    assert outcome_of(201, httpx.Headers(), b'{"job_id": "abc"}').platform_job_id == "abc"
    assert outcome_of(201, httpx.Headers(), b'{"id": 42}').platform_job_id == "42"
    assert outcome_of(200, httpx.Headers(), b"not json").platform_job_id == ""
    assert outcome_of(200, httpx.Headers(), b'["x"]').platform_job_id == ""


def test_errors_name_the_status_and_a_short_body() -> None:
    outcome = outcome_of(400, httpx.Headers(), b'{"error": "unknown pipeline"}' + b" " * 500)
    assert outcome.error.startswith('HTTP 400: {"error": "unknown pipeline"}')
    assert len(outcome.error) < 260


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after_s(httpx.Headers({"Retry-After": "7"})) == 7.0
    dated = httpx.Headers(
        {"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT", "Date": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    assert retry_after_s(dated) == 30.0
    assert retry_after_s(httpx.Headers({"Retry-After": "soon"})) == 0.0
    assert retry_after_s(httpx.Headers()) == 0.0
    assert outcome_of(503, httpx.Headers({"Retry-After": "3"}), b"").retry_after_s == 3.0
