"""The bus clock: how far every live source has delivered, in the broker's time (pure).

Folded from ``source.heartbeat`` records of ``<prefix>.sources`` (docs/processing.md,
"Time"). A heartbeat says, on its source's clock, "everything I received before
``watermark`` is acknowledged by Kafka"; its record is stamped by the broker
(``LogAppendTime``). ``appended - sent_at`` is the source's clock offset *plus the
heartbeat's delivery delay*; the smallest of these over the source's heartbeats of the
last ``idle_timeout_ms`` is its offset as well as it can be known, and ``watermark +
offset`` is the watermark in bus time, whatever the source's clock. (Taking each
heartbeat's own difference instead trusts its delay to be nil: a heartbeat that waited
in the producer through a broker outage would be appended late and claim that
everything up to its append time was delivered -- chaos seed 1008, a study split
because a killed SCP's outbox was overtaken by its own stale heartbeat.)

* The **watermark** of the bus is the smallest such value over the live sources: nothing
  received earlier can still be appended by any of them. A source that stopped cleanly
  owes nothing; one silent for longer than ``idle_timeout_ms`` (bus time) is *lost* and
  holds nothing back any more; one that is merely late (a pause, a stalled disk, a
  broker outage) holds the watermark where its last heartbeat left it.
* **Bus now** is the newest append time seen plus the local time elapsed since it was
  seen (monotonic), so a processor's own clock offset does not matter either.

No I/O, no clock reads: every time is an argument in epoch ms (``local`` times are the
caller's monotonic milliseconds).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from streams.events import SOURCE_LOST, SOURCE_STOPPED, SourceHeartbeat


@dataclass(slots=True)
class _Source:
    appended: int  # bus time of its latest heartbeat
    watermark: int  # bus time before which it owes nothing
    state: str
    # (appended, appended - sent_at) of its recent heartbeats, offsets increasing: the
    # first is the smallest of the window (a sliding minimum)
    offsets: deque[tuple[int, int]] = field(default_factory=deque)

    def offset(self, appended: int, sent_at: int, window_ms: int) -> int:
        """Fold one heartbeat's offset; the smallest of the last ``window_ms``."""
        offset = appended - sent_at
        offsets = self.offsets
        while offsets and offsets[-1][1] >= offset:
            offsets.pop()
        offsets.append((appended, offset))
        while offsets[0][0] < appended - window_ms:
            offsets.popleft()
        return offsets[0][1]


class BusClock:
    """Folds heartbeats; answers :meth:`now`, :meth:`watermark` and :meth:`lost`."""

    def __init__(self, *, idle_timeout_ms: int, grace_ms: int = 0) -> None:
        if idle_timeout_ms <= 0 or grace_ms < 0:
            raise ValueError("idle_timeout_ms must be > 0 and grace_ms >= 0")
        self.idle_timeout_ms = idle_timeout_ms
        self.grace_ms = grace_ms
        self._sources: dict[str, _Source] = {}
        self._newest = -1  # newest append time seen
        self._newest_local = 0  # local time when it was seen

    def heartbeat(self, beat: SourceHeartbeat, appended: int, local: int) -> None:
        """Fold one heartbeat whose record the broker stamped ``appended``."""
        source = self._sources.get(beat.source)
        if source is None:
            source = self._sources[beat.source] = _Source(appended, appended, beat.state)
        owed_since = min(beat.watermark, beat.sent_at)
        if beat.state == SOURCE_LOST:  # said by a processor, on its own clock
            watermark = appended - (beat.sent_at - owed_since)
        else:
            watermark = owed_since + source.offset(appended, beat.sent_at, self.idle_timeout_ms)
        source.appended, source.watermark, source.state = appended, watermark, beat.state
        if appended > self._newest:
            self._newest, self._newest_local = appended, local

    def now(self, local: int) -> int | None:
        """Bus time now (``None`` before the first heartbeat)."""
        if self._newest < 0:
            return None
        return self._newest + max(0, local - self._newest_local)

    def lost(self, local: int) -> list[str]:
        """Sources silent for longer than the idle timeout and not yet said lost or
        stopped: the caller declares them lost on the bus."""
        now = self.now(local)
        if now is None:
            return []
        return sorted(
            name
            for name, s in self._sources.items()
            if s.state not in (SOURCE_STOPPED, SOURCE_LOST)
            and now - s.appended > self.idle_timeout_ms
        )

    def watermark(self, local: int) -> int | None:
        """The bus watermark minus the grace (``None`` before the first heartbeat)."""
        now = self.now(local)
        if now is None:
            return None
        live = [
            s.watermark
            for s in self._sources.values()
            if s.state not in (SOURCE_STOPPED, SOURCE_LOST)
            and now - s.appended <= self.idle_timeout_ms
        ]
        return min(live, default=now) - self.grace_ms

    def sources(self) -> dict[str, tuple[int, int, str]]:
        """``{source: (last heartbeat, watermark, state)}`` in bus time (diagnostics)."""
        return {n: (s.appended, s.watermark, s.state) for n, s in self._sources.items()}
