"""The benchmark's event log: ``instance.received`` events in keyed sessions.

``events`` events over ``keys`` patients in ``rounds`` rounds: in every round each key
gets ``events / (keys * rounds)`` instances, interleaved across keys and stamped within
``ROUND_SPAN_MS`` (so each key's instances of a round form ONE session, all keys' sessions
of a round are open at once); rounds are ``ROUND_STRIDE_MS`` apart (more than twice the
gap, as Quix closes at ``last + 2 * gap``), so round r+1 closes round r by event time.
One sentinel event per partition, stamped ``SENTINEL_AFTER_MS`` after the last round,
closes the last round by event time on both sides (its own session never closes by
event time and is not counted).

The event time is both ``data.received_at`` (ours) and the Kafka record timestamp (Quix's
default timestamp). Times lie in the recent past so no broker limit on future
timestamps applies and wall-clock closing (ours, once caught up) cannot change the groups.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from streams.events import SCHEMA_VERSION, RecordKeys

AE_TITLE = "BENCH"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
UID_ROOT = "1.2.826.0.1.3680043.8.498"
ROUND_SPAN_MS = 4_000
ROUND_STRIDE_MS = 60_000
SENTINEL_AFTER_MS = 600_000
SENTINEL_PATIENT = "~sentinel"


@dataclass(frozen=True, slots=True)
class Event:
    """One record to produce: key, value, timestamp (and a fixed partition for sentinels)."""

    key: bytes
    value: bytes
    timestamp_ms: int
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class Dataset:
    """A generated log and what a correct session window must make of it."""

    events: tuple[Event, ...]  # counted events, in production order
    keys: int
    rounds: int
    per_session: int
    timeout_ms: int
    base_ms: int

    @property
    def expected_groups(self) -> int:
        """Closed sessions expected (sentinel sessions excluded)."""
        return self.keys * self.rounds

    @property
    def counted_events(self) -> int:
        """Events that belong to counted sessions."""
        return len(self.events)

    def with_ticks(self, partitions: int) -> tuple[Event, ...]:
        """The events with the bus clock written into the log, as a live run leaves it.

        The processor runtime closes groups only by ``clock.tick`` records
        (docs/processing.md, "Time"): after each round, one tick per partition at the
        round's last event time + timeout + 1 s, before the next round starts -- what the
        ticker writes once the bus watermark passes the round's deadlines. Quix ignores
        ticks, so its sides read the log without them (:attr:`events`).
        """
        per_round = len(self.events) // self.rounds
        out: list[Event] = []
        for r in range(self.rounds):
            out.extend(self.events[r * per_round : (r + 1) * per_round])
            at = self.base_ms + r * ROUND_STRIDE_MS + ROUND_SPAN_MS + self.timeout_ms + 1000
            out.extend(_tick(p, at) for p in range(partitions))
        return tuple(out)

    def sentinels(self, partitions: int) -> tuple[Event, ...]:
        """One far-future event per partition that closes every session by event time."""
        last = self.base_ms + (self.rounds - 1) * ROUND_STRIDE_MS + ROUND_SPAN_MS
        at = last + SENTINEL_AFTER_MS
        return tuple(
            Event(
                key=f"{AE_TITLE}/{SENTINEL_PATIENT}-{p}".encode(),
                value=_value(f"{SENTINEL_PATIENT}-{p}", 900_000 + p, 0, 999_999_999 - p, at),
                timestamp_ms=at,
                partition=p,
            )
            for p in range(partitions)
        )


def is_sentinel_key(key: str) -> bool:
    """Whether a group key or record key belongs to a sentinel session."""
    return SENTINEL_PATIENT in key


def patient(k: int) -> str:
    """The PatientID of key number ``k``."""
    return f"PAT{k:06d}"


def validate(events: int, keys: int, rounds: int = 2, timeout_ms: int = 5_000) -> None:
    """Raise ``ValueError`` (one line, with the fix) if the numbers make no clean log."""
    if events <= 0 or keys <= 0 or rounds <= 0:
        raise ValueError("events, keys and rounds must be positive")
    if events % (keys * rounds):
        raise ValueError(
            f"--events {events} is not a multiple of keys*rounds = {keys * rounds}; "
            "pick numbers so every session has the same size"
        )
    if ROUND_SPAN_MS / (events // (keys * rounds)) >= timeout_ms:
        raise ValueError("sessions would split: too few events per session for the span")
    if 2 * timeout_ms >= ROUND_STRIDE_MS - ROUND_SPAN_MS:
        raise ValueError("rounds must be more than 2 timeouts apart (Quix closes at 2 gaps)")


LAYOUTS = ("interleaved", "sequential")


def generate(
    events: int,
    keys: int,
    *,
    rounds: int = 2,
    timeout_ms: int = 5_000,
    base_ms: int | None = None,
    layout: str = "interleaved",
) -> Dataset:
    """Build the log; ``events`` must be a multiple of ``keys * rounds``.

    ``interleaved`` (default): within a round, keys take turns (key 0, 1, ..., K-1, 0,
    ...), as instances of many concurrent studies arrive; ``sequential``: each key's
    session is contiguous (key 0's instances, then key 1's, ...). Either way all
    sessions of a round are open together in event time.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    validate(events, keys, rounds, timeout_ms)
    if base_ms is None:
        # 30 minutes ago, whole seconds: recent enough for topic retention, in the past
        # so no broker limit on future timestamps applies.
        base_ms = (int(time.time()) - 1800) * 1000
    per_session = events // (keys * rounds)
    per_round = keys * per_session
    # the record keys an SCP writes (the public lab secret, as the bench's adapters use)
    record_key = RecordKeys()
    keys_of = [record_key(AE_TITLE, patient(k)).encode() for k in range(keys)]
    out: list[Event] = []
    for r in range(rounds):
        start = base_ms + r * ROUND_STRIDE_MS
        for i in range(per_round):
            k = i % keys if layout == "interleaved" else i // per_session
            t = start + (i * ROUND_SPAN_MS) // per_round
            pid = patient(k)
            out.append(
                Event(
                    key=keys_of[k],
                    value=_value(pid, k, r, r * per_round + i, t),
                    timestamp_ms=t,
                )
            )
    return Dataset(tuple(out), keys, rounds, per_session, timeout_ms, base_ms)


def _tick(partition: int, watermark: int) -> Event:
    """A ``clock.tick`` of ``partition`` at ``watermark`` (key and form of the ticker's)."""
    value = orjson.dumps(
        {
            "type": "clock.tick",
            "version": SCHEMA_VERSION,
            "id": f"00000000-0000-4000-9000-{partition:04d}{watermark % 10**8:08d}",
            "time": watermark,
            "source": "bench",
            "data": {"watermark": watermark, "writer": "bench"},
        }
    )
    return Event(key=b"clock", value=value, timestamp_ms=watermark, partition=partition)


def _value(pid: str, key_no: int, round_no: int, serial: int, received_at: int) -> bytes:
    """The wire form of ``encode(envelope(InstanceReceived(...)))`` of one event.

    Built directly (``encode`` goes through ``dataclasses.asdict``, slow for 200k
    events); realistic UID and path lengths. Decoding it with
    ``streams.events.decode`` and re-encoding gives the same bytes.
    """
    study = f"{UID_ROOT}.{round_no + 1}.{key_no}.1732800000"
    series = f"{study}.1"
    sop = f"{series}.{serial}"
    return orjson.dumps(
        {
            "type": "instance.received",
            "version": SCHEMA_VERSION,
            "id": f"00000000-0000-4000-8000-{serial:012d}",
            "time": received_at,
            "source": "bench",
            "data": {
                "called_ae": AE_TITLE,
                "calling_ae": "MODALITY1",
                "calling_host": "127.0.0.1",
                "association_id": f"assoc-{pid}-{round_no}",
                "sop_class_uid": CT_IMAGE_STORAGE,
                "sop_instance_uid": sop,
                "transfer_syntax_uid": EXPLICIT_VR_LE,
                "patient_id": pid,
                "study_instance_uid": study,
                "series_instance_uid": series,
                "received_at": received_at,
                "uri": f"/data/{AE_TITLE}/{study}/{series}/{sop}.dcm",
                "size": 526_000,
                "tags": {},
            },
        }
    )
