"""Control events of the bus: the clock of a partition, the state of a source, requests.

They carry no instance and no patient data. Wire form as every event
(:mod:`streams.events.serde`); decoders here default optional fields, so older writers
stay readable.

* ``source.heartbeat`` (topic ``<prefix>.sources``, key: the source): an SCP says what it
  still owes the bus -- everything it received before ``watermark`` (its own clock) is
  acknowledged by Kafka. Both times are on the source's clock, so their difference is
  exact whatever the clock's offset (docs/processing.md, "Time").
* ``clock.tick`` (topic ``<prefix>.instances``, written to one partition by the
  processor that owns it): nothing received before ``watermark`` (bus time, epoch ms)
  can still be appended to this partition by a live source. Windows close by these
  ticks, so a replay of the partition closes every group at the same place.
* ``group.close_requested`` (topic ``<prefix>.instances``, keyed like the group's
  instances): an operator asks the owner of a group to close it now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SOURCE_HEARTBEAT = "source.heartbeat"
CLOCK_TICK = "clock.tick"
GROUP_CLOSE_REQUESTED = "group.close_requested"

SOURCE_UP = "up"
SOURCE_STOPPED = "stopped"
SOURCE_LOST = "lost"


@dataclass(frozen=True, slots=True)
class SourceHeartbeat:
    """What a source (an SCP) still owes the bus, said every ``interval_ms``.

    ``watermark`` and ``sent_at`` are epoch ms on the source's own clock: every instance
    it received before ``watermark`` is acknowledged by Kafka (``pending`` are being
    delivered, ``outbox_bytes`` wait in its outbox). ``state`` ``stopped`` is the last
    heartbeat of a clean shutdown: the source owes nothing any more; ``lost`` is written
    by a processor for a source silent for longer than its idle timeout: it holds nothing
    back until it speaks again.
    """

    source: str
    sent_at: int
    watermark: int
    pending: int = 0
    outbox_bytes: int = 0
    associations: int = 0
    state: str = SOURCE_UP
    interval_ms: int = 1000
    ae_titles: tuple[str, ...] = ()  # the AE titles it receives for (``config check --kafka``)


@dataclass(frozen=True, slots=True)
class ClockTick:
    """The bus clock of one instances partition reached ``watermark`` (epoch ms)."""

    watermark: int
    writer: str = ""


@dataclass(frozen=True, slots=True)
class GroupCloseRequested:
    """Close the open group ``group_id`` of ``ae_title`` now (reason ``forced``)."""

    group_id: str
    ae_title: str
    requested_by: str = ""
    reason: str = ""


def source_heartbeat(d: Mapping[str, Any]) -> SourceHeartbeat:
    """``source.heartbeat`` data."""
    return SourceHeartbeat(
        source=d["source"],
        sent_at=d["sent_at"],
        watermark=d["watermark"],
        pending=d.get("pending", 0),
        outbox_bytes=d.get("outbox_bytes", 0),
        associations=d.get("associations", 0),
        state=d.get("state", SOURCE_UP),
        interval_ms=d.get("interval_ms", 1000),
        ae_titles=tuple(d.get("ae_titles", ())),
    )


def clock_tick(d: Mapping[str, Any]) -> ClockTick:
    """``clock.tick`` data."""
    return ClockTick(watermark=d["watermark"], writer=d.get("writer", ""))


def group_close_requested(d: Mapping[str, Any]) -> GroupCloseRequested:
    """``group.close_requested`` data."""
    return GroupCloseRequested(
        group_id=d["group_id"],
        ae_title=d["ae_title"],
        requested_by=d.get("requested_by", ""),
        reason=d.get("reason", ""),
    )
