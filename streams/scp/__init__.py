"""The DICOM SCP: C-ECHO/C-STORE in, instance files on disk, ``instance.received`` out."""

from streams.scp.bridge import EventSink, LoopBridge
from streams.scp.checks import (
    CANNOT_PARSE,
    DATA_SET_MISMATCH,
    INVALID_SOP_INSTANCE,
    identity_problem,
    is_valid_uid,
)
from streams.scp.delivery import Delivery, DeliveryError, Publisher, PublisherFactory
from streams.scp.gate import AssociationGate, AssociationInfo
from streams.scp.handlers import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    SUCCESS,
    AeOptions,
    StoreHandler,
    epoch_ms,
)
from streams.scp.negotiation import ABSTRACT_SYNTAXES, TRANSFER_SYNTAXES
from streams.scp.outbox import Outbox, OutboxEntry, OutboxError, decode_entry, encode_entry
from streams.scp.policy import (
    CALLED_AE_NOT_RECOGNIZED,
    CALLING_AE_NOT_RECOGNIZED,
    AssociationPolicy,
    Rejection,
)
from streams.scp.server import DicomServer
from streams.scp.service import OUTBOX_DIR, ScpService, kafka_publisher_factory, outbox_dir
from streams.scp.tags import CORE_TAGS, TagReadError, format_tag, parse_tag, read_tags

__all__ = [
    "ABSTRACT_SYNTAXES",
    "CALLED_AE_NOT_RECOGNIZED",
    "CALLING_AE_NOT_RECOGNIZED",
    "CANNOT_PARSE",
    "CANNOT_UNDERSTAND",
    "CORE_TAGS",
    "DATA_SET_MISMATCH",
    "INVALID_SOP_INSTANCE",
    "OUTBOX_DIR",
    "OUT_OF_RESOURCES",
    "SUCCESS",
    "TRANSFER_SYNTAXES",
    "AeOptions",
    "AssociationGate",
    "AssociationInfo",
    "AssociationPolicy",
    "Delivery",
    "DeliveryError",
    "DicomServer",
    "EventSink",
    "LoopBridge",
    "Outbox",
    "OutboxEntry",
    "OutboxError",
    "Publisher",
    "PublisherFactory",
    "Rejection",
    "ScpService",
    "StoreHandler",
    "TagReadError",
    "decode_entry",
    "encode_entry",
    "epoch_ms",
    "format_tag",
    "identity_problem",
    "is_valid_uid",
    "kafka_publisher_factory",
    "outbox_dir",
    "parse_tag",
    "read_tags",
]
