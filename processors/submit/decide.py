"""What an attempt's outcome means for the ledger (pure; clock and randomness injected).

``submitted`` → ``job.submitted``. ``retriable`` → ``job.failed(will_retry=true)`` with the
time of the next attempt, until the round's ``max_attempts`` is used up; then, and for
every ``permanent`` outcome, ``job.failed(will_retry=false)``: the job is dead-lettered,
its payload and instance files stay for an operator (``dicom-adapter jobs retry``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from processors.submit.backoff import RetryPolicy
from processors.submit.platform import PlatformJob, SubmitOutcome
from streams.events import JobFailed, JobSubmitted


@dataclass(frozen=True, slots=True)
class Decision:
    """The event to write and, when the job will be tried again, after how long."""

    event: JobSubmitted | JobFailed
    retry_delay_s: float | None = None


def decide(
    job: PlatformJob,
    outcome: SubmitOutcome,
    *,
    attempts_in_round: int,
    policy: RetryPolicy,
    now_ms: int,
    rand: Callable[[], float],
) -> Decision:
    """Turn the outcome of attempt ``job.attempt`` into its ledger event.

    ``attempts_in_round`` counts this attempt too (1 for the first of a round).
    """
    if outcome.kind == "submitted":
        return Decision(job.submitted_event(outcome.platform_job_id))
    error = outcome.error or outcome.kind
    if outcome.kind == "retriable" and policy.will_retry(attempts_in_round):
        delay = policy.delay_s(attempts_in_round, rand, at_least_s=outcome.retry_after_s)
        retry_at = now_ms + round(delay * 1000)
        return Decision(JobFailed(job.job_id, job.attempt, error, True, retry_at), delay)
    if outcome.kind == "retriable":
        error = f"{error} (gave up after {attempts_in_round} attempts)"
    return Decision(JobFailed(job.job_id, job.attempt, error, False, 0))
