"""The orphan sweeper: removes instance files no durable event announces (see
:mod:`processors.reclaim.orphans`) and reports each as ``instances.removed`` with
``reason="orphan"`` on the jobs topic, keyed like the instance's other events.

It runs beside the reclaimer (``submit`` role) on the storage folder of its adapter.
Files it confirmed in the instances topic are remembered, so later sweeps read the
topic only for files that newly crossed the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
from aiokafka.errors import KafkaError

from processors.reclaim.files import delete_instances
from processors.reclaim.orphans import (
    CLOCK_SLACK_MS,
    StoredFile,
    candidates,
    outbox_uris,
    read_from_ms,
    scan_instance_files,
)
from streams import metrics
from streams.errors import BrokerError
from streams.events import GroupInstance, InstanceReceived, InstancesRemoved, RecordKeys, envelope
from streams.kafka import Connection, LogReader, Publisher, publish_until_acked
from streams.lifecycle import first_of

log = logging.getLogger(__name__)

ORPHAN = "orphan"


def sweep_interval_s(grace_s: float) -> float:
    """A quarter of the grace period, between 0.1 s and 15 minutes."""
    return min(900.0, max(0.1, grace_s / 4))


class OrphanSweeper:
    """Sweep ``storage`` for orphan files every :func:`sweep_interval_s` of the grace."""

    def __init__(
        self,
        *,
        storage: Path,
        kafka: Connection,
        instances_topic: str,
        publisher: Publisher,
        jobs_topic: str,
        source: str,
        keys: RecordKeys,
        grace_s: float,
        known: Callable[[str], bool] = lambda _uri: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.kafka = kafka
        self.instances_topic = instances_topic
        self.publisher = publisher
        self.jobs_topic = jobs_topic
        self.source = source
        self.keys = keys
        self.grace_ms = round(grace_s * 1000)
        self.interval_s = sweep_interval_s(grace_s)
        self.known = known
        self.clock = clock
        self._announced: set[str] = set()  # files whose event this sweeper has seen

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep until ``stop``."""
        while not stop.is_set():
            await self.sweep(stop)
            if await first_of(stop, None, self.interval_s):
                return

    async def sweep(self, stop: asyncio.Event) -> list[InstancesRemoved]:
        """One pass; returns the removals written."""
        now_ms = int(self.clock() * 1000)
        files = await asyncio.to_thread(lambda: list(scan_instance_files(self.storage)))
        present = {f.uri for f in files}
        self._announced &= present
        # The outbox first, the topic after: an event that leaves the outbox in between
        # is already in the topic when its end is read.
        queued = await asyncio.to_thread(outbox_uris, self.storage)
        found = candidates(
            files,
            now_ms,
            self.grace_ms,
            lambda uri: uri in queued or uri in self._announced or self.known(uri),
        )
        if not found:
            return []
        try:
            self._announced |= await self._in_topic(found)
        except (BrokerError, KafkaError) as exc:  # an outage: the next sweep tries again
            log.warning("orphan sweep skipped: cannot read %s: %s", self.instances_topic, exc)
            return []
        out: list[InstancesRemoved] = []
        for orphan in found:
            if stop.is_set():
                break
            if orphan.uri in self._announced or self.known(orphan.uri):
                continue
            removed = await self._remove(orphan, stop)
            if removed is not None:
                out.append(removed)
        return out

    async def _in_topic(self, found: list[StoredFile]) -> set[str]:
        """The files of ``found`` whose event the topic has -- or may have had: a file
        older than the oldest record of a partition that retention has cut cannot be
        proven an orphan (its event may have gone), so it counts as announced."""
        wanted = {f.uri for f in found}
        start_ms = read_from_ms(found) or 0
        hits: set[str] = set()
        async with LogReader(self.kafka, client_id=f"{self.source}-orphans") as reader:
            partitions = await reader.partitions(self.instances_topic)
            cut = await reader.truncated_at(self.instances_topic, partitions)
            horizon = max(cut.values(), default=0)
            hits |= {f.uri for f in found if f.mtime_ms - CLOCK_SLACK_MS < horizon}
            starts = await reader.offsets_at(self.instances_topic, partitions, start_ms)
            async for batch in reader.batches(starts):
                for record in batch:
                    data = record.envelope.data
                    if isinstance(data, InstanceReceived) and data.uri in wanted:
                        hits.add(data.uri)
        return hits

    async def _remove(self, orphan: StoredFile, stop: asyncio.Event) -> InstancesRemoved | None:
        ae, study, series, stem = orphan.parts
        patient, sop = await asyncio.to_thread(_identity, orphan.uri)
        instance = GroupInstance(sop or stem, study, series, orphan.uri)
        result = await asyncio.to_thread(
            delete_instances, self.storage, [instance], not_after_ms=orphan.mtime_ms
        )
        if not result.removed:
            return None  # written again since it was listed, or refused (logged)
        metrics.bytes_reclaimed(result.bytes_freed)
        event = InstancesRemoved(
            sop_instance_uids=(instance.sop_instance_uid,),
            uris=(orphan.uri,),
            reason=ORPHAN,
            ae_title=ae,
            bytes_freed=result.bytes_freed,
        )
        env = envelope(event, source=self.source, time_ms=int(self.clock() * 1000))
        if not await publish_until_acked(
            self.publisher, self.jobs_topic, self.keys(ae, patient), env, stop
        ):
            return None
        log.info(
            "removed orphan file %s (%d bytes): no event announced it within %.0f s",
            orphan.uri, result.bytes_freed, self.grace_ms / 1000,
        )  # fmt: skip
        return event


def _identity(uri: str) -> tuple[str, str]:
    """``(PatientID, SOPInstanceUID)`` of a stored file, ``("", "")`` if unreadable (the
    key then groups it under its AE title alone)."""
    try:
        ds = pydicom.dcmread(
            uri, stop_before_pixels=True, specific_tags=["PatientID", "SOPInstanceUID"]
        )
    except Exception:  # any unreadable file is still an orphan to remove
        return "", ""
    return str(ds.get("PatientID", "")), str(ds.get("SOPInstanceUID", ""))
