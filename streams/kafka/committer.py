"""Committing a consumer group's offsets: what is safe, with metadata, never backwards.

The I/O half of :mod:`streams.kafka.commits` for :class:`~streams.kafka.source.KafkaSource`:
it asks the subscriber's ``commit_bound`` what may be committed, stores a metadata
string with each commit (the processor runtime keeps its ledger position there), and
reads back what the group committed (on assignment, so a commit never moves back).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from streams.errors import BrokerError
from streams.kafka.clients import KafkaConnection
from streams.kafka.commits import CommitBound, CommitTracker

log = logging.getLogger(__name__)

CommitMetadata = Callable[[TopicPartition, int], str]
"""Metadata to store with the commit of ``offset`` on a partition: ``(tp, offset) -> str``."""

Metadata = str | Mapping[TopicPartition, str] | None


class Committer:
    """Commits of one consumer group member (``consumer``: a started aiokafka consumer)."""

    def __init__(
        self,
        kafka: KafkaConnection,
        group_id: str,
        client_id: str,
        *,
        bound: CommitBound[TopicPartition] | None = None,
        metadata: CommitMetadata | None = None,
    ) -> None:
        self.kafka = kafka
        self.group_id = group_id
        self.client_id = client_id
        self.tracker: CommitTracker[TopicPartition] = CommitTracker()
        self._bound = bound
        self._metadata = metadata
        self._at_assignment: dict[TopicPartition, OffsetAndMetadata] = {}
        self._restamp: set[TopicPartition] = set()
        self._admin: Any = None

    def pending(self) -> dict[TopicPartition, int]:
        """Safe offsets past the last commit, within the bound."""
        return self.tracker.pending(self._bound)

    async def commit(
        self,
        consumer: Any,
        offsets: Mapping[TopicPartition, int] | None = None,
        metadata: Metadata = None,
    ) -> dict[TopicPartition, int]:
        """Commit ``offsets`` (default: :meth:`pending`) of assigned partitions; return
        what was committed. Raises :class:`BrokerError` if the broker refuses."""
        wanted = dict(self.pending() if offsets is None else offsets)
        assigned = consumer.assignment()
        chosen = {tp: off for tp, off in wanted.items() if tp in assigned}
        if not chosen:
            return {}
        payload = {
            tp: OffsetAndMetadata(off, self._text(tp, off, metadata)) for tp, off in chosen.items()
        }
        try:
            await consumer.commit(payload)
        except KafkaError as exc:
            raise BrokerError(f"commit for group {self.group_id!r} failed: {exc}") from exc
        self.tracker.committed(chosen)
        log.debug("group %s committed %s", self.group_id, chosen)
        return chosen

    def restamp(self, partitions: Iterable[TopicPartition]) -> None:
        """Store fresh metadata with the last commit of ``partitions`` at the next
        :meth:`commit_pending`, even if their offsets did not move (an idle processor's
        ledger position moves while its input does not). Only for partitions whose
        metadata is ready: the commit stores what ``metadata`` returns then."""
        self._restamp.update(partitions)

    async def commit_pending(
        self, consumer: Any, only: frozenset[TopicPartition] | None = None
    ) -> None:
        """Commit what is safe (of ``only``) and re-commit the partitions to
        :meth:`restamp`; a refusal is logged, not raised: the next owner re-reads from
        the last good commit and the ledger dedupes."""
        pending = self.pending()
        restamp = self._restamp if only is None else self._restamp & only
        for tp in restamp:
            last = self.tracker.last_committed(tp)
            if last is not None:
                pending.setdefault(tp, last)
        self._restamp -= restamp
        if only is not None:
            pending = {tp: off for tp, off in pending.items() if tp in only}
        if not pending:
            return
        try:
            await self.commit(consumer, pending)
        except BrokerError as exc:
            log.warning("could not commit %d partition(s): %s", len(pending), exc)

    def _text(self, tp: TopicPartition, offset: int, metadata: Metadata) -> str:
        if isinstance(metadata, str):
            return metadata
        if metadata is not None:
            return metadata.get(tp, "")
        return self._metadata(tp, offset) if self._metadata is not None else ""

    async def committed(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Committed offsets with their metadata, asked of the broker now; partitions
        without a commit are left out."""
        if not partitions:
            return {}
        if self._admin is None:
            admin = self.kafka.admin(client_id=f"{self.client_id}-offsets")
            await admin.start()
            self._admin = admin
        found = await self._admin.list_consumer_group_offsets(
            self.group_id, partitions=list(partitions)
        )
        return {tp: om for tp, om in found.items() if om.offset >= 0}

    def assigned(self, found: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        """Remember what the group had committed for newly assigned partitions."""
        self._at_assignment.update(found)
        self.tracker.committed({tp: om.offset for tp, om in found.items()})

    def at_assignment(self, tp: TopicPartition) -> OffsetAndMetadata | None:
        """What the group had committed for ``tp`` when it was assigned."""
        return self._at_assignment.get(tp)

    def forget(self, partitions: frozenset[TopicPartition]) -> None:
        """Drop the state of revoked partitions."""
        self.tracker.forget(partitions)
        self._restamp -= partitions
        for tp in partitions:
            self._at_assignment.pop(tp, None)

    async def close(self) -> None:
        """Close the admin client, if one was opened."""
        admin, self._admin = self._admin, None
        if admin is not None:
            await admin.close()
