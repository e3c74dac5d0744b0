"""The processor runtime: any job processor on Kafka, exactly once (DESIGN.md §4).

Generic: it talks to processors only through :class:`processors.base.JobProcessor`'s
public hooks and imports no processor implementation. The ``process`` role
(:mod:`processors.roles.process`) wires it to Kafka.
"""

from processors.runtime.build import build_processors, processor_classes
from processors.runtime.ledger_index import LedgerIndex
from processors.runtime.metadata import decode_positions, encode_positions
from processors.runtime.runtime import ProcessorRoleError, ProcessorRuntime
from processors.runtime.sink import LedgerSink

__all__ = [
    "LedgerIndex",
    "LedgerSink",
    "ProcessorRoleError",
    "ProcessorRuntime",
    "build_processors",
    "decode_positions",
    "encode_positions",
    "processor_classes",
]
