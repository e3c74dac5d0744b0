"""Exports (issue 17): send result files to DICOM and DICOMweb destinations, with retries.

The fold of ``<prefix>.exports`` (:mod:`.state`), what to do next (:mod:`.plan`), the
retry rule (:mod:`.decide`), the senders of configured destinations (:mod:`.senders`),
one attempt as a thin shell around them (:mod:`.service`), the exporter that owns and
attempts requests on Kafka (:mod:`.exporter`), accepting a request (:mod:`.requests`),
the REST API (:mod:`.api`) and what the CLI and the API show (:mod:`.views`). The role is
composed in :mod:`processors.roles.export`.
"""

from processors.export.api import exports_router
from processors.export.decide import (
    Decision,
    Verdict,
    classify,
    decide,
    ends_attempt,
    instance_of,
    summary,
)
from processors.export.exporter import ExportService
from processors.export.plan import due, next_due_at, plan_batches
from processors.export.senders import make_senders, retry_policy
from processors.export.service import ExportWorker, Publish
from processors.export.state import (
    ExportLedger,
    ExportState,
    ExportStatus,
    FileState,
    fold,
)

__all__ = [
    "Decision",
    "ExportLedger",
    "ExportService",
    "ExportState",
    "ExportStatus",
    "ExportWorker",
    "FileState",
    "Publish",
    "Verdict",
    "classify",
    "decide",
    "due",
    "ends_attempt",
    "exports_router",
    "fold",
    "instance_of",
    "make_senders",
    "next_due_at",
    "plan_batches",
    "retry_policy",
    "summary",
]
