"""Instance events whose key another key secret made: the warning a split bus needs.

Every adapter of a bus must hash Patient IDs with the same ``kafka.key_secret``
(:mod:`streams.events.keys`): with two secrets one patient has two keys, two partitions
and two owners, and a study sent through two SCPs becomes two jobs. The processors see
every instance event, so they check each key against their own computation and say so
(a WARNING per source adapter, a counter per record) instead of splitting groups
silently. Events written before keys were hashed (``<AE>/<PatientID>``) are counted
the same way during a migration (docs/security.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from streams import metrics
from streams.events import InstanceReceived, RecordKeys
from streams.kafka import Record

log = logging.getLogger(__name__)


class KeyCheck:
    """An observer of the instances source comparing each record's key with ``keys``
    (which remembers the keys it computed: :class:`~streams.events.RecordKeys`)."""

    def __init__(self, keys: RecordKeys) -> None:
        self._keys = keys
        self._warned: set[str] = set()

    def batch(self, records: Sequence[Record]) -> None:
        """Check every record of a batch."""
        for record in records:
            self(record)

    def __call__(self, record: Record) -> None:
        data = record.envelope.data
        if type(data) is not InstanceReceived:
            return
        expected = self._keys(data.called_ae, data.patient_id)
        if record.key == expected:
            return
        source = record.envelope.source
        metrics.foreign_key(source)
        if source not in self._warned:
            self._warned.add(source)
            log.warning(
                "instance events from adapter %s carry keys made with another key secret "
                "(first at %s[%d]@%d): one patient can land on two partitions and its "
                "groups split; give every adapter of the bus the same kafka.key_secret",
                source,
                record.topic,
                record.partition,
                record.offset,
            )
