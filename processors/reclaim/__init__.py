"""The storage reclaimer: instance files of submitted groups, expired payload folders."""

from processors.reclaim.files import (
    REWRITE_SLACK_MS,
    DeleteResult,
    delete_instances,
    inside,
    prune_empty_dirs,
)
from processors.reclaim.request import removal_request
from processors.reclaim.service import ReclaimService
from processors.reclaim.state import (
    PAYLOAD_EXPIRED,
    ExpiredPayload,
    GroupFiles,
    ReclaimLedger,
    ReclaimPlan,
)

__all__ = [
    "PAYLOAD_EXPIRED",
    "REWRITE_SLACK_MS",
    "DeleteResult",
    "ExpiredPayload",
    "GroupFiles",
    "ReclaimLedger",
    "ReclaimPlan",
    "ReclaimService",
    "delete_instances",
    "inside",
    "prune_empty_dirs",
    "removal_request",
]
