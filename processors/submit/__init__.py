"""Job submission: payload staging, platform clients, retries, priorities, the ledger fold."""

from processors.submit.backoff import RetryPolicy
from processors.submit.clients import make_platform
from processors.submit.decide import Decision, decide
from processors.submit.http_platform import HttpPlatform, outcome_of, retry_after_s
from processors.submit.kafka_platform import KafkaPlatform
from processors.submit.platform import PlatformClient, PlatformJob, SubmitOutcome
from processors.submit.queue import JobQueue
from processors.submit.service import SubmitService
from processors.submit.state import JobLedger, JobState, fold

__all__ = [
    "Decision",
    "HttpPlatform",
    "JobLedger",
    "JobQueue",
    "JobState",
    "KafkaPlatform",
    "PlatformClient",
    "PlatformJob",
    "RetryPolicy",
    "SubmitOutcome",
    "SubmitService",
    "decide",
    "fold",
    "make_platform",
    "outcome_of",
    "retry_after_s",
]
