"""The cache processor: the seed's "Cache Service" example (seed §13.1.3, last section).

"Extend JobProcessorBase and have HandleInstance(...) build up an internal database and
cache the DICOM instances. Then, you can provide an API (gRPC/REST) to compose a new job
by specifying the studies to use, submit the job, and then cleanup the instances."

    instances --> handle_instance --> SQLite (committed before on_next returns)
    POST /cache/<ae>/jobs      --> claim (SQLite) --> group.closed with one job (ledger)
                               --> confirm: instances released (the reclaimer deletes
                                   their files once the submitter submitted the job)
    DELETE /cache/<ae>/studies/<uid> --> the same with a group.closed without jobs

Exactly-once without holding offsets: each instance is committed to SQLite before
``on_next`` returns, so the runtime may commit its offset right away; the database is
the processor's durable state. Job and removal records list their inputs, so a replay
skips what they consumed, and the store ignores a replayed position anyway. If the
database file is lost, :meth:`CacheProcessor.start` rebuilds it from the topics
(:mod:`processors.cache.rebuild`). See docs/custom-processors.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from processors.base import JobProcessor
from processors.cache.rebuild import rebuild
from processors.cache.requests import (
    ClaimedError,
    InvalidRequestError,
    ReleasedStudy,
    SubmittedJob,
    UnavailableError,
    UnknownStudiesError,
    group_key,
    resolve_pipeline,
    unique_studies,
)
from processors.cache.rows import CachedInstance
from processors.cache.schema import database_path
from processors.cache.settings import CacheSettings, parse_cache_settings
from processors.cache.store import JOB, REMOVAL, CacheStore, ClaimConflictError
from processors.contracts import REASON_DUPLICATE, DurableJobSink, ProcessorContext
from processors.jobnames import fix_job_name, job_id, job_name
from processors.jobrecords import pipeline_job
from processors.reclaim import removal_request
from streams.events import (
    EventDecodeError,
    GroupClosed,
    InputOffset,
    InstanceReceived,
    Priority,
    decode,
    encode,
)
from streams.events import envelope as make_envelope

if TYPE_CHECKING:
    from fastapi import APIRouter

log = logging.getLogger(__name__)

NAME = "Cache Processor"
REASON_RELEASED = "cache-released"
STUDY_TAG = "(0020,000D)"
#: Released rows are kept this long so a replay of their inputs cannot list them again.
RELEASED_RETENTION_MS = 7 * 24 * 3600 * 1000


class CacheProcessor(JobProcessor):
    """Caches an AE title's instances in SQLite; jobs are composed over its REST API.

    The store is ``<storage>/.cache/<AE>.sqlite3``, opened by :meth:`start`; to use the
    processor without a runtime (tests), give it one with :meth:`use_store`.
    """

    name = NAME
    settings: CacheSettings

    @classmethod
    def parse_settings(
        cls, ae_title: str, processor_settings: Mapping[str, Any], *, where: str | None = None
    ) -> tuple[CacheSettings, list[str]]:
        """``priority`` and ``pipeline-<name>`` keys (see :mod:`processors.cache.settings`)."""
        return parse_cache_settings(ae_title, processor_settings, where=where)

    def setup(self) -> None:
        """No store yet: :meth:`start` opens it."""
        self._store: CacheStore | None = None
        self.adapter_id = ""
        self._inflight: set[str] = set()  # claims whose ledger write is being awaited

    def use_store(self, store: CacheStore) -> None:
        """Use ``store`` instead of opening one in :meth:`start`."""
        self._store = store

    @classmethod
    def api_router(cls, processors: Mapping[str, JobProcessor]) -> APIRouter | None:
        """The REST API under ``/cache`` (see :mod:`processors.cache.api`)."""
        from processors.cache.api import create_router  # noqa: PLC0415 - FastAPI on demand

        return create_router(processors)

    @property
    def store(self) -> CacheStore:
        """The open store; raises :class:`UnavailableError` before :meth:`start`/after stop."""
        if self._store is None or self.is_stopped:
            state = "stopped" if self.is_stopped else "not started"
            raise UnavailableError(f"the cache of AE title {self.ae_title} is {state}")
        return self._store

    def now_ms(self) -> int:
        """The scheduler's time in epoch milliseconds (time is a parameter)."""
        return int(self.scheduler.now.timestamp() * 1000)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, context: ProcessorContext) -> None:
        """Open the database, rebuild it from the topics if it is new or incomplete,
        forget long-released rows and re-send claims a crash left pending."""
        self.adapter_id = context.adapter_id
        if self._store is None:
            self._store = CacheStore(database_path(context.storage, self.ae_title))
        store = self._store
        if not store.ready:
            if context.kafka and context.instances_topic and context.jobs_topic:
                result = await rebuild(
                    store,
                    self.ae_title,
                    kafka=context.kafka,
                    instances_topic=context.instances_topic,
                    jobs_topic=context.jobs_topic,
                    now_ms=self.now_ms(),
                )
                log.info("%s %s: cache database rebuilt: %s", NAME, self.ae_title, result)
            store.mark_ready()
        pruned = store.prune_released(self.now_ms() - RELEASED_RETENTION_MS)
        if pruned:
            log.info("%s %s: forgot %d long-released instances", NAME, self.ae_title, pruned)
        try:
            await self.flush_pending()
        except UnavailableError as exc:  # retried before the next request
            log.warning("%s %s: %s", NAME, self.ae_title, exc)
        log.info(
            "%s for %s: %s; priority=%s pipelines=%s",
            NAME,
            self.ae_title,
            store.path,
            self.settings.priority,
            ", ".join(name for name, _ in self.settings.pipelines) or "(by id)",
        )

    def stopped(self) -> None:
        """Close the database (the API answers 503 from now on)."""
        if self._store is not None:
            self._store.close()

    # -- input -----------------------------------------------------------------------

    def handle_instance(self, instance: InstanceReceived, position: InputOffset) -> None:
        """Record the instance (committed before returning); reclaim a superseded copy."""
        outcome = self.store.add(instance, position)
        if outcome.superseded is not None:
            self.remove_instances([outcome.superseded], REASON_DUPLICATE)

    # -- requests (the REST API calls these) ------------------------------------------

    async def submit_studies(
        self,
        studies: Sequence[str],
        *,
        pipeline: str | None = None,
        pipeline_id: str | None = None,
        priority: Priority | None = None,
        name: str | None = None,
    ) -> SubmittedJob:
        """Submit one job with every cached instance of ``studies``, then release them.

        Raises a :class:`~processors.cache.requests.CacheRequestError`; on any error
        nothing is submitted and nothing released.
        """
        uids = unique_studies(studies)
        chosen = resolve_pipeline(self.ae_title, self.settings, pipeline, pipeline_id)
        now = self.now_ms()
        if name is None:
            fixed = job_name(self.ae_title, chosen.name or "cache", now)
        else:
            try:
                fixed = fix_job_name(name)
            except ValueError as exc:
                raise InvalidRequestError(f"'name': {exc}; use letters, digits and '-'") from None
        await self.flush_pending()
        cached = self._cached(uids)
        record = pipeline_job(
            fixed,
            chosen.pipeline_id,
            priority or self.settings.priority,
            [c.instance for c in cached],
            processor=self.name,
            ae_title=self.ae_title,
            inputs=_positions(cached),
            pipeline_name=chosen.name,
            group_key=group_key(uids),
        )
        record = replace(record, group_by=STUDY_TAG)  # jobs are composed of studies
        spec = record.jobs[0]
        await self._claim_and_write(spec.job_id, JOB, record)
        log.info(
            "%s %s: job %s submitted with %d studies, %d instances",
            NAME,
            self.ae_title,
            spec.job_id,
            len(uids),
            len(record.instances),
        )
        return SubmittedJob(
            job_id=spec.job_id,
            name=spec.name,
            pipeline_name=spec.pipeline_name,
            pipeline_id=spec.pipeline_id,
            priority=spec.priority,
            studies=uids,
            instances=len(record.instances),
        )

    async def release_study(self, study_uid: str) -> ReleasedStudy:
        """Release a study without a job: its files go to the reclaimer."""
        (uid,) = unique_studies([study_uid])
        await self.flush_pending()
        cached = self._cached((uid,))
        first = _positions(cached)[0]
        request_id = job_id(
            NAME, self.ae_title, "", f"release\x1f{uid}",
            first_partition=first.partition, first_offset=first.offset,
        )  # fmt: skip
        request = removal_request(
            processor=NAME,
            ae_title=self.ae_title,
            instances=[c.instance for c in cached],
            inputs=_positions(cached),
            reason=REASON_RELEASED,
        )
        record = replace(request, group_by=STUDY_TAG, group_key=uid)  # for auditors
        await self._claim_and_write(request_id, REMOVAL, record)
        log.info("%s %s: a study released (%d instances)", NAME, self.ae_title, len(cached))
        return ReleasedStudy(uid, len(cached), request_id)

    def _cached(self, uids: Sequence[str]) -> list[CachedInstance]:
        cached = self.store.cached_instances(uids)
        found = {c.instance.study_instance_uid for c in cached}
        unknown = [u for u in uids if u not in found]
        if unknown:
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            shown = ", ".join(unknown[:5]) + more
            raise UnknownStudiesError(
                f"AE title {self.ae_title} has no cached instances of {len(unknown)} "
                f"requested studies: {shown}; list them with GET /cache/{self.ae_title}/studies",
                unknown,
            )
        return cached

    async def _claim_and_write(self, claim_id: str, kind: str, record: GroupClosed) -> None:
        store = self.store
        event = encode(
            make_envelope(record, source=self.adapter_id, time_ms=self.now_ms(), event_id=claim_id)
        )
        uids = [i.sop_instance_uid for i in record.instances]
        try:
            store.claim(claim_id, kind, event, uids, self.now_ms())
        except ClaimConflictError as exc:
            raise ClaimedError(f"{exc}; list the studies again and retry") from None
        self._inflight.add(claim_id)
        try:
            await self._write_claimed(claim_id, kind, record)
        finally:
            self._inflight.discard(claim_id)

    async def _write_claimed(self, claim_id: str, kind: str, record: GroupClosed) -> None:
        try:
            await self._write(record)
            failure = None
        except Exception as exc:
            failure = exc
            log.warning("%s %s: the ledger did not take a %s: %s", NAME, self.ae_title, kind, exc)
        if self.is_stopped:  # the store is closed; the claim stays pending in the file
            raise UnavailableError(
                f"the process stopped while the {kind} was being written; it is completed "
                "when the process starts again"
            )
        if failure is not None:
            self.store.abandon(claim_id)
            raise UnavailableError(
                f"the jobs ledger did not acknowledge the {kind} ({failure}); nothing was "
                "submitted or released, send the request again"
            )
        self.store.confirm(claim_id, self.now_ms())

    async def _write(self, record: GroupClosed) -> None:
        sink = self.sink
        if isinstance(sink, DurableJobSink):
            await sink.write_group_closed(record)
        else:
            sink.group_closed(record)
        self.counters.groups += 1
        self.counters.jobs += len(record.jobs)

    async def flush_pending(self) -> int:
        """Re-send claims a crash left pending (same ids, so a repeat is harmless)."""
        store = self.store
        sent = 0
        for claim in store.pending_claims():
            if claim.claim_id in self._inflight:
                continue  # a request is awaiting its write right now
            try:
                data = decode(claim.event).data
            except EventDecodeError as exc:
                data = None
                log.error("%s %s: pending %s unreadable: %s", NAME, self.ae_title, claim.kind, exc)
            if not isinstance(data, GroupClosed):  # cannot be sent: list its instances again
                store.abandon(claim.claim_id)
                continue
            self._inflight.add(claim.claim_id)
            try:
                await self._write(data)
            except Exception as exc:
                raise UnavailableError(
                    f"the jobs ledger did not acknowledge a pending {claim.kind} ({exc}); "
                    "send the request again later"
                ) from None
            finally:
                self._inflight.discard(claim.claim_id)
            self.store.confirm(claim.claim_id, self.now_ms())
            sent += 1
        if sent:
            log.info("%s %s: re-sent %d pending requests", NAME, self.ae_title, sent)
        return sent


def _positions(cached: Sequence[CachedInstance]) -> list[InputOffset]:
    """Input positions in log order (the first one anchors the deterministic id)."""
    return sorted((c.position for c in cached), key=lambda p: (p.partition, p.offset))
