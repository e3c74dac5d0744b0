"""The processor runtime: job processors on Kafka, exactly once (DESIGN.md §4).

:func:`run_process_role` runs the ``process`` role until its stop event is set;
:func:`process_role` is the same as a ``processors.app`` role (``run``, ``process``).
"""

from processors.runtime.build import build_processors, processor_classes
from processors.runtime.holds import PartitionHolds
from processors.runtime.ledger_index import LedgerIndex
from processors.runtime.metadata import decode_positions, encode_positions
from processors.runtime.records import event_id, record_key, removal_without_input
from processors.runtime.role import (
    ProcessRole,
    check_process_config,
    process_role,
    process_role_with,
    processors_group,
    run_process_role,
)
from processors.runtime.router import InstanceRouter
from processors.runtime.runtime import ProcessorRoleError, ProcessorRuntime
from processors.runtime.sink import LedgerSink

__all__ = [
    "InstanceRouter",
    "LedgerIndex",
    "LedgerSink",
    "PartitionHolds",
    "ProcessRole",
    "ProcessorRoleError",
    "ProcessorRuntime",
    "build_processors",
    "check_process_config",
    "decode_positions",
    "encode_positions",
    "event_id",
    "process_role",
    "process_role_with",
    "processor_classes",
    "processors_group",
    "record_key",
    "removal_without_input",
    "run_process_role",
]
