"""Event ids seen lately on each instances partition, to drop re-published copies (pure).

The SCP publishes an event again (same envelope id) when a send failed or was pending
when it died (streams.scp.delivery). A copy that reaches a processor after the group of
its original closed would open a second group: a job twice for one C-STORE. The router
drops a record whose id it saw on the same partition among the last ``capacity``
records; a copy lands on the same partition as its original (same key), normally
within a few records of it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

#: Ids remembered per partition: ~2 MB each at most.
DEFAULT_CAPACITY = 16384


class RecentIds:
    """The last ``capacity`` event ids of each partition, oldest forgotten first."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        # OrderedDict, not dict: forgetting the oldest of a plain dict
        # (``del d[next(iter(d))]``) re-scans the deleted slots at its front on every call
        # (~5 % of the processor's CPU in a profile, docs/benchmarks.md);
        # ``popitem(last=False)`` is O(1).
        self._ids: dict[int, OrderedDict[str, None]] = {}

    def seen(self, partition: int, event_id: str) -> bool:
        """True when ``event_id`` was seen on ``partition`` lately; else remember it."""
        ids = self._ids.get(partition)
        if ids is None:
            ids = self._ids[partition] = OrderedDict()
        elif event_id in ids:
            return True
        ids[event_id] = None
        if len(ids) > self.capacity:
            ids.popitem(last=False)
        return False

    def forget(self, partitions: Iterable[int]) -> None:
        """Forget ``partitions``: on assignment and revocation the consumer seeks back to
        the committed offset, and re-read records are not copies."""
        for partition in partitions:
            self._ids.pop(partition, None)

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._ids.values())


__all__ = ["DEFAULT_CAPACITY", "RecentIds"]
