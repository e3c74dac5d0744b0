"""The cache processor without Kafka: instances into SQLite, jobs and removals as records.

A real store on disk, a recording sink (and a durable one that can fail), virtual time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers.instances import RecordingSink, make_instance
from reactivex.testing import TestScheduler

from processors.cache import (
    NAME,
    CacheProcessor,
    CacheStore,
    ClaimedError,
    InvalidRequestError,
    UnavailableError,
    UnknownStudiesError,
    database_path,
)
from processors.cache.rows import CachedInstance
from processors.cache.store import JOB
from processors.contracts import DurableJobSink, ProcessorContext, Removal
from processors.jobrecords import pipeline_job
from streams.errors import BrokerError
from streams.events import GroupClosed, InputOffset, InstanceReceived, encode, envelope

AE = "CACHE"
SETTINGS = {"priority": "higher", "pipeline-lung": "P-LUNG", "pipeline-heart": "P-HEART"}


@dataclass
class DurableSink:
    """A durable sink (as the runtime's): awaits each write; can be told to fail."""

    fail: bool = False
    written: list[GroupClosed] = field(default_factory=list)
    removed: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)

    def group_closed(self, record: GroupClosed, superseded: Sequence[object] = ()) -> None:
        raise AssertionError("the cache awaits write_group_closed instead")

    async def write_group_closed(self, record: GroupClosed) -> None:
        if self.fail:
            raise BrokerError("Kafka at 127.0.0.1:1 did not acknowledge")
        self.written.append(record)

    def remove(self, removal: Removal) -> None:
        uris = tuple(i.uri for i in removal.instances)
        self.removed.append((removal.ae_title, uris, removal.reason))


async def started(
    tmp_path: Path, sink: object | None = None, settings: dict[str, str] | None = None
) -> tuple[CacheProcessor, TestScheduler, object]:
    sched = TestScheduler()
    sched.advance_to(1_700_000_000)  # virtual "now", seconds
    the_sink = sink if sink is not None else RecordingSink(sched)
    proc = CacheProcessor(AE, SETTINGS if settings is None else settings, the_sink, sched)  # type: ignore[arg-type]
    await proc.start(ProcessorContext(storage=tmp_path, adapter_id="a1"))
    return proc, sched, the_sink


def feed(proc: CacheProcessor, items: Sequence[tuple[int, int, InstanceReceived]]) -> None:
    for item in items:
        proc.on_next(item)


def two_studies(ae: str = AE) -> list[tuple[int, int, InstanceReceived]]:
    return [
        (0, 0, make_instance(received_at=1000, ae=ae, patient="P1", study="S1", sop="1.1")),
        (0, 1, make_instance(received_at=1001, ae=ae, patient="P1", study="S1", sop="1.2")),
        (1, 0, make_instance(received_at=1002, ae=ae, patient="P2", study="S2", sop="2.1")),
    ]


async def test_instances_are_cached_in_the_ae_titles_database(tmp_path: Path) -> None:
    proc, _, sink = await started(tmp_path)
    feed(proc, two_studies())
    feed(proc, [(0, 2, make_instance(received_at=5, ae="OTHER", study="S9"))])
    assert database_path(tmp_path, AE).is_file()
    assert [s.study_instance_uid for s in proc.store.studies().items] == ["S1", "S2"]
    assert proc.counters.instances == 3 and proc.counters.not_supported == 1
    assert isinstance(sink, RecordingSink) and sink.records == []  # never closes groups itself
    assert proc.held_offsets() == {}  # nothing held: the row is committed before on_next returns


async def test_a_re_sent_copy_in_another_file_reclaims_the_old_file(tmp_path: Path) -> None:
    proc, _, sink = await started(tmp_path)
    proc.on_next((0, 0, make_instance(received_at=1, ae=AE, sop="1.1", uri="/d/a.dcm")))
    proc.on_next((0, 1, make_instance(received_at=2, ae=AE, sop="1.1", uri="/d/b.dcm")))
    assert isinstance(sink, RecordingSink)
    assert [(uris, reason) for _, _, uris, reason in sink.removed] == [(("/d/a.dcm",), "duplicate")]
    assert proc.store.overview().instances == 1


async def test_submit_studies_writes_one_job_with_exactly_those_instances(tmp_path: Path) -> None:
    proc, _, sink = await started(tmp_path)
    assert isinstance(sink, RecordingSink)
    feed(proc, two_studies())
    job = await proc.submit_studies(["S1"], pipeline="lung")
    [record] = sink.records
    assert record.processor == NAME and record.ae_title == AE and record.reason == "submitted"
    assert record.group_by == "(0020,000D)" and record.group_key == "S1"
    assert sorted(i.sop_instance_uid for i in record.instances) == ["1.1", "1.2"]
    assert record.inputs == (InputOffset(0, 0), InputOffset(0, 1))
    assert (record.first_received_at, record.last_received_at) == (1000, 1001)
    [spec] = record.jobs
    assert (spec.job_id, spec.pipeline_name, spec.pipeline_id) == (job.job_id, "lung", "P-LUNG")
    assert spec.priority == "higher"  # the AE title's default
    assert spec.name == job.name == "cache-lung-20231114221320"  # <ae>-<pipeline>-<UTC now>
    assert (job.studies, job.instances) == (("S1",), 2)
    # Released: S1 is gone from the listing, S2 is still there.
    assert [s.study_instance_uid for s in proc.store.studies().items] == ["S2"]
    assert proc.store.state_of("1.1") == "released"
    # A replay of S1's inputs (no commit yet when the process crashed) does not list it again.
    feed(proc, two_studies()[:2])
    assert proc.store.study("S1") is None


async def test_the_job_id_is_a_function_of_the_request_and_inputs(tmp_path: Path) -> None:
    one, _, _ = await started(tmp_path / "a")
    two, _, _ = await started(tmp_path / "b")
    feed(one, two_studies())
    feed(two, two_studies())
    a = await one.submit_studies(
        ["S2", "S1", "S2"], pipeline_id="X", priority="lower", name="My Job!"
    )
    b = await two.submit_studies(["S1", "S2"], pipeline_id="X", name="other")
    assert a.job_id == b.job_id  # same studies, pipeline and inputs: a retry is recognised
    assert a.studies == ("S2", "S1") and a.instances == 3
    assert (a.name, a.priority, a.pipeline_name) == ("my-job", "lower", "")


async def test_the_pipeline_defaults_to_the_only_configured_one(tmp_path: Path) -> None:
    proc, _, _ = await started(tmp_path, settings={"pipeline-brain": "P-B"})
    feed(proc, two_studies())
    job = await proc.submit_studies(["S1"])
    assert (job.pipeline_name, job.pipeline_id, job.priority) == ("brain", "P-B", "normal")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"studies": ["S1"]}, InvalidRequestError, "say which pipeline to run"),
        ({"studies": ["S1"], "pipeline": "knee"}, InvalidRequestError, "no pipeline named 'knee'"),
        (
            {"studies": ["S1"], "pipeline": "lung", "pipeline_id": "X"},
            InvalidRequestError,
            "either",
        ),
        ({"studies": ["S1"], "pipeline_id": " "}, InvalidRequestError, "'pipeline_id' is blank"),
        ({"studies": [], "pipeline": "lung"}, InvalidRequestError, "'studies' is empty"),
        ({"studies": ["S1", " "], "pipeline": "lung"}, InvalidRequestError, "blank Study"),
        ({"studies": ["S1"], "pipeline": "lung", "name": "!!"}, InvalidRequestError, "'name'"),
        (
            {"studies": ["S1", "S7"], "pipeline": "lung"},
            UnknownStudiesError,
            "1 requested studies: S7",
        ),
    ],
)
async def test_a_bad_request_changes_nothing(
    tmp_path: Path, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    proc, _, sink = await started(tmp_path)
    feed(proc, two_studies())
    studies = kwargs.pop("studies")
    with pytest.raises(error, match=message):
        await proc.submit_studies(studies, **kwargs)  # type: ignore[arg-type]
    assert isinstance(sink, RecordingSink) and sink.records == []
    assert proc.store.overview().instances == 3 and proc.store.pending_claims() == []


async def test_unknown_studies_are_listed(tmp_path: Path) -> None:
    proc, _, _ = await started(tmp_path)
    with pytest.raises(UnknownStudiesError) as info:
        await proc.submit_studies([f"S{i}" for i in range(7)], pipeline="lung")
    assert info.value.unknown == tuple(f"S{i}" for i in range(7))
    assert "S0, S1, S2, S3, S4 and 2 more" in str(info.value)


async def test_a_durable_sink_is_awaited_and_a_failed_write_changes_nothing(tmp_path: Path) -> None:
    sink = DurableSink(fail=True)
    assert isinstance(sink, DurableJobSink)
    proc, _, _ = await started(tmp_path, sink)
    feed(proc, two_studies())
    with pytest.raises(UnavailableError, match=r"did not acknowledge.*nothing was submitted"):
        await proc.submit_studies(["S1"], pipeline="lung")
    with pytest.raises(UnavailableError):
        await proc.release_study("S2")
    assert proc.store.overview().studies == 2 and proc.store.pending_claims() == []
    sink.fail = False
    job = await proc.submit_studies(["S1"], pipeline="lung")
    assert [r.jobs[0].job_id for r in sink.written] == [job.job_id]
    assert proc.store.overview().studies == 1


async def test_release_study_writes_a_removal_request(tmp_path: Path) -> None:
    proc, _, sink = await started(tmp_path)
    assert isinstance(sink, RecordingSink)
    feed(proc, two_studies())
    released = await proc.release_study("S2")
    [record] = sink.records
    assert record.jobs == () and record.reason == "cache-released"
    assert (record.group_by, record.group_key, record.patient_id) == ("(0020,000D)", "S2", "P2")
    assert record.inputs == (InputOffset(1, 0),)
    assert [i.sop_instance_uid for i in record.instances] == ["2.1"]
    assert (released.study_instance_uid, released.instances) == ("S2", 1)
    assert proc.store.study("S2") is None
    with pytest.raises(UnknownStudiesError):
        await proc.release_study("S2")


async def test_pending_claims_left_by_a_crash_are_sent_on_start(tmp_path: Path) -> None:
    # Simulate a crash after the claim was stored but before the ledger write.
    proc, _, _ = await started(tmp_path)
    feed(proc, two_studies())
    cached = proc.store.cached_instances(["S1"])
    record = pipeline_job(
        "j", "P-LUNG", "normal", [c.instance for c in cached], processor=proc.name,
        ae_title=proc.ae_title, inputs=[c.position for c in cached],
    )  # fmt: skip
    event = encode(envelope(record, source="a1", time_ms=1, event_id=record.jobs[0].job_id))
    proc.store.claim(
        record.jobs[0].job_id, JOB, event, [c.instance.sop_instance_uid for c in cached], 1
    )
    proc.on_completed()  # the store is closed; the process "restarts"
    with pytest.raises(UnavailableError, match="stopped"):
        proc.store.overview()
    sink = DurableSink()
    again, _, _ = await started(tmp_path, sink)
    assert [r.jobs[0].job_id for r in sink.written] == [record.jobs[0].job_id]
    assert again.store.study("S1") is None and again.store.pending_claims() == []


class RacingStore(CacheStore):
    """A store where another request claims the instances right after they are listed
    (as a concurrent request on another thread could)."""

    def cached_instances(self, study_uids: Sequence[str]) -> list[CachedInstance]:
        found = super().cached_instances(study_uids)
        self.claim("other", JOB, b"{}", [found[0].instance.sop_instance_uid], 1)
        return found


async def test_instances_claimed_meanwhile_are_a_conflict_that_changes_nothing(
    tmp_path: Path,
) -> None:
    sched = TestScheduler()
    sink = RecordingSink(sched)
    store = RacingStore(tmp_path / "racing.sqlite3")
    proc = CacheProcessor(AE, SETTINGS, sink, sched)
    proc.use_store(store)
    await proc.start(ProcessorContext(storage=tmp_path))
    feed(proc, two_studies())
    with pytest.raises(ClaimedError, match="1 of the instances are no longer cached"):
        await proc.submit_studies(["S1"], pipeline="lung")
    assert sink.records == []
    assert store.state_of("1.2") == "cached"  # not left pending by the failed request
    assert [c.claim_id for c in store.pending_claims()] == ["other"]


async def test_not_started_means_unavailable(tmp_path: Path) -> None:
    sched = TestScheduler()
    proc = CacheProcessor(AE, SETTINGS, RecordingSink(sched), sched)
    with pytest.raises(UnavailableError, match="not started"):
        await proc.submit_studies(["S1"], pipeline="lung")
    store = CacheStore(tmp_path / "given.sqlite3")
    given = CacheProcessor(AE, SETTINGS, RecordingSink(sched), sched)
    given.use_store(store)
    await given.start(ProcessorContext(storage=tmp_path))
    assert given.store is store and store.ready  # no broker in the context: nothing to rebuild
    assert not database_path(tmp_path, AE).exists()


@dataclass
class GatedSink(DurableSink):
    """A durable sink whose writes wait until ``gate`` is set (a slow broker)."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: list[GroupClosed] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def write_group_closed(self, record: GroupClosed) -> None:
        self.waiting.append(record)
        self.arrived.set()
        await self.gate.wait()
        await super().write_group_closed(record)

    async def until_waiting(self, n: int) -> None:
        while len(self.waiting) < n:
            self.arrived.clear()
            await self.arrived.wait()


async def test_a_write_in_flight_is_not_re_sent_by_another_request(tmp_path: Path) -> None:
    sink = GatedSink()
    proc, _, _ = await started(tmp_path, sink)
    feed(proc, two_studies())
    first = asyncio.create_task(proc.submit_studies(["S1"], pipeline="lung"))
    await sink.until_waiting(1)  # the first request is waiting for its ack
    second = asyncio.create_task(proc.release_study("S2"))  # flushes pending claims first
    await sink.until_waiting(2)
    sink.gate.set()
    job, released = await first, await second
    assert [r.jobs[0].job_id if r.jobs else r.group_key for r in sink.written] == [
        job.job_id,
        released.study_instance_uid,
    ]
    assert proc.store.overview().instances == 0 and proc.store.pending_claims() == []


async def test_stopping_while_a_write_is_awaited_completes_it_at_the_next_start(
    tmp_path: Path,
) -> None:
    sink = GatedSink()
    proc, _, _ = await started(tmp_path, sink)
    feed(proc, two_studies())
    request = asyncio.create_task(proc.submit_studies(["S1"], pipeline="lung"))
    await sink.until_waiting(1)
    proc.on_completed()  # shutdown: the store closes
    sink.gate.set()
    with pytest.raises(UnavailableError, match="completed when the process starts again"):
        await request
    again_sink = DurableSink()
    again, _, _ = await started(tmp_path, again_sink)
    assert [r.group_key for r in again_sink.written] == ["S1"]
    assert [s.study_instance_uid for s in again.store.studies().items] == ["S2"]
