"""Job submission: payload staging, platform clients, retries, priorities, the ledger fold."""

from processors.submit.backoff import RetryPolicy
from processors.submit.clients import PLATFORMS, make_platform
from processors.submit.decide import Decision, decide
from processors.submit.http_platform import HttpPlatform, outcome_of, retry_after_s
from processors.submit.kafka_platform import KafkaPlatform
from processors.submit.platform import PlatformClient, PlatformJob, SubmitOutcome
from processors.submit.queue import RANK, JobQueue, QueuedJob
from processors.submit.service import SubmitService
from processors.submit.staging import (
    PAYLOADS_DIR,
    StagedPayload,
    StagingError,
    payload_dir,
    payloads_root,
    remove_payload,
    stage_payload,
    staged_path,
)
from processors.submit.state import HistoryEntry, JobLedger, JobState, JobStatus, fold

__all__ = [
    "PAYLOADS_DIR",
    "PLATFORMS",
    "RANK",
    "Decision",
    "HistoryEntry",
    "HttpPlatform",
    "JobLedger",
    "JobQueue",
    "JobState",
    "JobStatus",
    "KafkaPlatform",
    "PlatformClient",
    "PlatformJob",
    "QueuedJob",
    "RetryPolicy",
    "StagedPayload",
    "StagingError",
    "SubmitOutcome",
    "SubmitService",
    "decide",
    "fold",
    "make_platform",
    "outcome_of",
    "payload_dir",
    "payloads_root",
    "remove_payload",
    "retry_after_s",
    "stage_payload",
    "staged_path",
]
