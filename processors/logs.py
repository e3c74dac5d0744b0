"""Logging set-up, done once by the CLI (libraries only log; STYLE.md §12).

No log line names a patient, at any level (the chaos suite runs every role at DEBUG and
checks): our own code never formats patient data into messages, and
:class:`NoPatientData` keeps out the third-party DEBUG records that would — aiokafka
prints every record it sends (key and value: the event, its ``patient_id`` included)
and every request and response on the wire.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

# Context fields a JSON log line carries when a record has them (``extra=...``).
CONTEXT_FIELDS = ("adapter_id", "role", "association_id", "job_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and known context."""

    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(self.static)
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


#: (logger, message prefix) of records that print Kafka records or wire requests.
_PAYLOAD_RECORDS = (("aiokafka.producer.producer", "Sending"), ("aiokafka.conn", ""))


class NoPatientData(logging.Filter):
    """Drops third-party DEBUG records that print event payloads (patient data), and
    the traceback pynetdicom attaches to some errors (the message already says it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG:
            for name, prefix in _PAYLOAD_RECORDS:
                if record.name == name and str(record.msg).startswith(prefix):
                    return False
        if record.exc_info and record.name.startswith("pynetdicom"):
            record.exc_info = None
            record.exc_text = None
        return True


_NO_LEADER_YET = frozenset({"NotLeaderForPartitionError", "LeaderNotAvailableError"})

#: aiokafka records (logger, message start, error class names or None for any) that
#: report a broker state which passes by itself: the group coordinator of a new broker
#: or group is still being elected/loaded, a group is rebalancing, a new topic's
#: partitions have no leader yet. On every clean start they came as ERROR/WARNING
#: lines and made a healthy start look broken.
_TRANSIENT = (
    (
        "aiokafka.consumer.group_coordinator",
        "Group Coordinator Request failed",
        frozenset(
            {
                "GroupCoordinatorNotAvailableError",
                "CoordinatorLoadInProgressError",
                "NotCoordinatorForGroupError",
            }
        ),
    ),
    ("aiokafka.consumer.group_coordinator", "Marking the coordinator dead", None),
    ("aiokafka.consumer.group_coordinator", "Heartbeat failed for group %s: coordinator", None),
    ("aiokafka.consumer.group_coordinator", "Heartbeat failed for group %s because it is", None),
    ("aiokafka.producer.sender", "Got error produce response on topic-partition", _NO_LEADER_YET),
    ("aiokafka.consumer.fetcher", "Failed fetch offsets from", _NO_LEADER_YET),
)


class TransientBrokerStates(logging.Filter):
    """Logs known transient broker states (:data:`_TRANSIENT`) at DEBUG, not as errors.

    A state that lasts longer than ``patience_s`` (counted from its first record, and
    restarted once it has been quiet that long) is a real problem: its records then
    keep their level. ``show_debug``: whether DEBUG lines are wanted at all.
    """

    def __init__(
        self,
        *,
        show_debug: bool,
        patience_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.show_debug = show_debug
        self.patience_s = patience_s
        self.clock = clock
        self._seen: dict[str, tuple[float, float]] = {}  # message start -> (first, last)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = _transient_kind(record)
        if kind is None:
            return True
        now = self.clock()
        first, last = self._seen.get(kind, (now, now))
        if now - last > self.patience_s:
            first = now
        self._seen[kind] = (first, now)
        if now - first > self.patience_s:
            return True
        record.levelno = logging.DEBUG
        record.levelname = "DEBUG"
        return self.show_debug


def _transient_kind(record: logging.LogRecord) -> str | None:
    message = str(record.msg)
    for logger, start, errors in _TRANSIENT:
        if record.name != logger or not message.startswith(start):
            continue
        if errors is None:
            return start
        args = record.args if isinstance(record.args, tuple) else ()
        # aiokafka passes an error instance, or (the producer) the error class.
        if any(_class_name(arg) in errors for arg in args):
            return start
    return None


def _class_name(arg: object) -> str:
    return arg.__name__ if isinstance(arg, type) else type(arg).__name__


_handler: logging.Handler | None = None


def configure_logging(level: str = "INFO", fmt: str = "text", **static: Any) -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    global _handler  # noqa: PLW0603 - the CLI configures logging exactly once per process
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(NoPatientData())
    handler.addFilter(TransientBrokerStates(show_debug=level == "DEBUG"))
    if fmt == "json":
        handler.setFormatter(JsonFormatter(static))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter stays at WARNING unless asked for DEBUG.
    for noisy in ("aiokafka", "pynetdicom", "kafka", "uvicorn"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    _handler = handler


def set_static_context(**static: Any) -> None:
    """Add fields (adapter_id, role) to every JSON log line from now on."""
    if _handler is not None and isinstance(_handler.formatter, JsonFormatter):
        _handler.formatter.static.update(static)
