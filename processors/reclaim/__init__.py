"""The storage reclaimer: instance files of submitted groups, expired payload folders."""

from processors.reclaim.files import (
    delete_instances,
    inside,
    prune_empty_dirs,
)
from processors.reclaim.request import removal_request
from processors.reclaim.service import ReclaimService
from processors.reclaim.state import (
    ReclaimLedger,
)
from processors.reclaim.sweeper import OrphanSweeper

__all__ = [
    "OrphanSweeper",
    "ReclaimLedger",
    "ReclaimService",
    "delete_instances",
    "inside",
    "prune_empty_dirs",
    "removal_request",
]
