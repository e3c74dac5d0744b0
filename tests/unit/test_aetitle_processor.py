"""The AE Title Job Processor on virtual time: the seed's scenarios and Clara's cases.

Records are replayed on a TestScheduler at their ``received_at`` (1 tick = 1 s); the
processor runs with grace 0 and every partition caught up unless a test says otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from helpers.instances import (
    RecordingSink,
    ae_title_processor,
    hot_source,
    make_instance,
    positioned,
)
from reactivex.testing import TestScheduler

from processors.aetitle import AeTitleJobProcessor, AeTitleSettings
from processors.aetitle.settings import PATIENT_ID, SERIES_INSTANCE_UID, STUDY_INSTANCE_UID
from processors.base import ProcessorFailedError
from processors.jobnames import job_name
from streams.events import GroupClosed, InputOffset, InstanceReceived, Priority
from streams.kafka.commits import CommitTracker

T0 = 1_732_800_000_000  # 2024-11-28 13:20:00 UTC, epoch ms
S = 1000  # ms per second


def settings(
    *,
    group_by: str = STUDY_INSTANCE_UID,
    priority: Priority = "normal",
    timeout_s: int = 5,
    pipelines: Sequence[tuple[str, str]] = (("breast", "8abf244aff7647989d4f6b3987a85759"),),
) -> AeTitleSettings:
    return AeTitleSettings(
        group_by=group_by, priority=priority, timeout_s=timeout_s, pipelines=tuple(pipelines)
    )


def make(
    cfg: AeTitleSettings, *, caught_up: bool = True, ae: str = "AET1"
) -> tuple[TestScheduler, RecordingSink, AeTitleJobProcessor]:
    sched = TestScheduler()
    sink = RecordingSink(sched)
    processor = ae_title_processor(sink, sched, cfg, ae=ae, caught_up=caught_up)
    return sched, sink, processor


def replay(
    cfg: AeTitleSettings, instances: Sequence[InstanceReceived], **kwargs: bool
) -> tuple[TestScheduler, RecordingSink, AeTitleJobProcessor]:
    sched, sink, processor = make(cfg, **kwargs)
    hot_source(sched, positioned(instances)).subscribe(processor)
    sched.start()
    return sched, sink, processor


def test_name_and_required_tags() -> None:
    _, _, processor = make(settings())
    assert processor.name == "AE Title Job Processor"
    assert str(processor) == "AE Title Job Processor"
    assert processor.ae_title == "AET1"
    assert AeTitleJobProcessor.required_tags("AET1", {"pipeline-a": "x"}) == ()
    assert AeTitleJobProcessor.required_tags(
        "AET1", {"pipeline-a": "x", "groupBy": "0008,0050"}
    ) == ("00080050",)


def test_settings_are_parsed_from_processor_settings_when_not_given() -> None:
    sched = TestScheduler()
    processor = AeTitleJobProcessor(
        "AET1",
        {"groupBy": "Patient", "timeout": 60, "pipeline-lung": "id1"},
        RecordingSink(sched),
        sched,
    )
    assert processor.settings.group_by == PATIENT_ID
    assert processor.settings.timeout_s == 60
    assert processor.group_by == "(0010,0020)"


def test_seed_scenario_1_five_studies_of_one_patient_give_three_jobs() -> None:
    cfg = settings(
        group_by=PATIENT_ID,
        timeout_s=60,
        pipelines=(
            ("lung", "8abf244aff7647989d4f6b3987a85759"),
            ("heart", "c5f996a71e1d4959bd6a2c8cf7130f88"),
            ("breast", "eb48c784ef20425580db7d46a30829b2"),
        ),
    )
    # Five studies of patient X, each in its own association, all within 60 s.
    instances = [
        make_instance(
            received_at=T0 + (12 * study + i) * S,
            patient="X",
            study=f"S{study}",
            series=f"S{study}.1",
            association=f"assoc-{study}",
        )
        for study in range(5)
        for i in range(3)
    ]
    _, sink, _ = replay(cfg, instances)
    assert len(sink.closed) == 1
    tick, record = sink.closed[0]
    last = instances[-1].received_at
    assert tick == (last + 60 * S) / 1000
    assert [job.pipeline_name for job in record.jobs] == ["lung", "heart", "breast"]
    assert [job.pipeline_id for job in record.jobs] == [p for _, p in cfg.pipelines]
    assert {job.priority for job in record.jobs} == {"normal"}
    assert {i.study_instance_uid for i in record.instances} == {f"S{n}" for n in range(5)}
    assert len(record.instances) == 15
    assert len({job.job_id for job in record.jobs}) == 3
    assert record.group_by == "(0010,0020)"
    assert record.group_key == "X" and record.patient_id == "X"
    assert record.reason == "timeout"


def test_seed_scenario_2_three_studies_in_one_association_give_three_jobs() -> None:
    cfg = settings(priority="higher")  # defaults otherwise: Study, 5 s
    instances = [
        make_instance(received_at=T0 + (3 * n + i) * S, study=f"study-{name}", series=f"se-{name}")
        for n, name in enumerate("ABC")
        for i in range(3)
    ]
    _, sink, _ = replay(cfg, instances)
    assert [(tick, r.group_key) for tick, r in sink.closed] == [
        ((T0 + 2 * S + 5 * S) / 1000, "study-A"),
        ((T0 + 5 * S + 5 * S) / 1000, "study-B"),
        ((T0 + 8 * S + 5 * S) / 1000, "study-C"),
    ]
    for _, record in sink.closed:
        (job,) = record.jobs
        assert (job.pipeline_name, job.priority) == ("breast", "higher")
        assert len(record.instances) == 3


def test_seed_scenario_2_debounce_keeps_one_study_open() -> None:
    # T1, T2 = T1+4, T3 = T2+3, T4 = T3+1, each in its own association.
    times = [0, 4, 7, 8]
    instances = [
        make_instance(received_at=T0 + t * S, association=f"assoc-{n}") for n, t in enumerate(times)
    ]
    _, sink, _ = replay(settings(priority="higher"), instances)
    assert len(sink.closed) == 1
    tick, record = sink.closed[0]
    assert tick == (T0 + 13 * S) / 1000
    assert len(record.instances) == 4


# Clara's AeTitleJobProcessorTest: I1(P1,S1,Se1) I2(P1,S1,Se2) I3(P1,S2,Se3) I4(P2,S3,Se4)
FIXTURE = [
    ("I1", "P1", "S1", "Se1"),
    ("I2", "P1", "S1", "Se2"),
    ("I3", "P1", "S2", "Se3"),
    ("I4", "P2", "S3", "Se4"),
]


@pytest.mark.parametrize(
    ("group_by", "priority", "expected"),
    [
        (PATIENT_ID, "higher", {"P1": ["I1", "I2", "I3"], "P2": ["I4"]}),
        (STUDY_INSTANCE_UID, "immediate", {"S1": ["I1", "I2"], "S2": ["I3"], "S3": ["I4"]}),
        (
            SERIES_INSTANCE_UID,
            "lower",
            {"Se1": ["I1"], "Se2": ["I2"], "Se3": ["I3"], "Se4": ["I4"]},
        ),
    ],
)
def test_grouping_by_patient_study_series_gives_4_6_8_jobs(
    group_by: str, priority: Priority, expected: dict[str, list[str]]
) -> None:
    cfg = settings(
        group_by=group_by,
        priority=priority,
        pipelines=(("first", "PIPELINE1"), ("second", "PIPELINE2")),
    )
    instances = [
        make_instance(received_at=T0, sop=sop, patient=p, study=s, series=se)
        for sop, p, s, se in FIXTURE
    ]
    _, sink, _ = replay(cfg, instances)
    jobs = sink.jobs
    assert len(jobs) == 2 * len(expected)
    assert sorted(jobs) == sorted(
        (pipeline, key, tuple(sorted(sops)))
        for key, sops in expected.items()
        for pipeline in ("first", "second")
    )
    assert {job.priority for record in sink.records for job in record.jobs} == {priority}
    assert {tick for tick, _ in sink.closed} == {(T0 + 5 * S) / 1000}


def test_a_gap_longer_than_the_timeout_splits_a_group() -> None:
    instances = [make_instance(received_at=T0), make_instance(received_at=T0 + 7 * S)]
    _, sink, _ = replay(settings(), instances)
    assert [(tick, len(r.instances)) for tick, r in sink.closed] == [
        ((T0 + 5 * S) / 1000, 1),
        ((T0 + 12 * S) / 1000, 1),
    ]
    ids = [r.jobs[0].job_id for r in sink.records]
    assert ids[0] != ids[1]


def test_no_job_before_the_deadline() -> None:
    sched, sink, processor = make(settings())
    hot_source(sched, positioned([make_instance(received_at=T0)])).subscribe(processor)
    sched.advance_to((T0 + 5 * S - 1) / 1000)
    assert sink.closed == []
    assert processor.held_offsets() == {0: 0}
    sched.advance_to((T0 + 5 * S) / 1000)
    assert len(sink.closed) == 1
    assert processor.held_offsets() == {}


def test_missing_or_blank_group_tag_gives_no_job_and_reclaims_the_file(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = settings(group_by="00080050")  # AccessionNumber, from the event's tags
    instances = [
        make_instance(received_at=T0, patient="SECRET-PID-1", tags={}, uri="file:///a.dcm"),
        make_instance(received_at=T0, patient="SECRET-PID-2", tags={"00080050": "  "}),
        make_instance(received_at=T0, patient="SECRET-PID-3", tags={"00080050": "ACC1"}),
    ]
    with caplog.at_level(logging.DEBUG):
        _, sink, processor = replay(cfg, instances)
    assert [r.group_key for r in sink.records] == ["ACC1"]
    assert [(uris, reason) for _, _, uris, reason in sink.removed] == [
        (("file:///a.dcm",), "missing-group-key"),
        ((instances[1].uri,), "missing-group-key"),
    ]
    # Each removal names the input it consumed, so a replay skips it.
    assert sink.removed_inputs == [(InputOffset(0, 0),), (InputOffset(0, 1),)]
    assert processor.counters.missing_key == 2
    assert "(0008,0050)" in caplog.text and instances[0].sop_class_uid in caplog.text
    assert "SECRET-PID" not in caplog.text  # no PHI in logs at any level


def test_blank_patient_id_is_skipped_when_grouping_by_patient() -> None:
    instances = [make_instance(received_at=T0, patient=" \x00")]
    _, sink, processor = replay(settings(group_by=PATIENT_ID), instances)
    assert sink.closed == []
    assert processor.counters.missing_key == 1


def test_duplicates_by_sop_instance_uid_collapse_last_wins() -> None:
    instances = [
        make_instance(received_at=T0, sop="1.2.3", uri="file:///first/1.2.3.dcm"),
        make_instance(received_at=T0 + S, sop="1.2.4", uri="file:///first/1.2.4.dcm"),
        make_instance(received_at=T0 + 2 * S, sop="1.2.3", uri="file:///second/1.2.3.dcm"),
        make_instance(received_at=T0 + 3 * S, sop="1.2.4", uri="file:///first/1.2.4.dcm"),
    ]
    _, sink, _ = replay(settings(), instances)
    (record,) = sink.records
    assert [(i.sop_instance_uid, i.uri) for i in record.instances] == [
        ("1.2.3", "file:///second/1.2.3.dcm"),
        ("1.2.4", "file:///first/1.2.4.dcm"),
    ]
    assert [i.offset for i in record.inputs] == [0, 1, 2, 3]  # every input is covered
    # The superseded copy lives in another file: reclaimed. The same-file copy is kept.
    assert [(uris, reason) for _, _, uris, reason in sink.removed] == [
        (("file:///first/1.2.3.dcm",), "duplicate")
    ]


def test_instances_for_another_ae_title_are_ignored() -> None:
    instances = [make_instance(received_at=T0, ae="OTHER"), make_instance(received_at=T0)]
    _, sink, processor = replay(settings(), instances)
    assert len(sink.records) == 1 and len(sink.records[0].instances) == 1
    assert processor.counters.not_supported == 1
    assert not processor.accepts(instances[0])


def test_revocation_drops_open_groups_without_jobs() -> None:
    sched, sink, processor = make(settings())
    hot_source(sched, positioned([make_instance(received_at=T0)])).subscribe(processor)
    sched.advance_to((T0 + S) / 1000)
    processor.partitions_revoked([0])
    sched.start()
    assert sink.closed == []
    assert processor.held_offsets() == {}


def test_graceful_shutdown_emits_no_partial_group() -> None:
    sched, sink, processor = make(settings())
    hot_source(sched, positioned([make_instance(received_at=T0)], start=41)).subscribe(processor)
    sched.advance_to((T0 + S) / 1000)
    processor.on_completed()
    sched.start()
    assert sink.closed == []
    assert processor.is_stopped
    assert processor.held_offsets() == {0: 41}  # what the final commit must stay below


def test_event_time_mode_closes_when_a_later_record_passes_the_deadline() -> None:
    instances = [
        make_instance(received_at=T0, study="A"),
        make_instance(received_at=T0 + 5 * S, study="B"),  # == A's deadline: not passed
        make_instance(received_at=T0 + 60 * S, study="C"),
    ]
    _, sink, processor = replay(settings(), instances, caught_up=False)
    assert [(tick, r.group_key) for tick, r in sink.closed] == [
        ((T0 + 60 * S) / 1000, "A"),
        ((T0 + 60 * S) / 1000, "B"),
    ]
    assert processor.held_offsets() == {0: 2}


def test_job_names_and_ids_are_functions_of_the_log() -> None:
    cfg = settings(pipelines=(("brain_tumor", "P1"),))
    instances = [
        make_instance(received_at=T0 + 3 * S, sop="1.1"),
        make_instance(received_at=T0 + 8 * S, sop="1.2"),
    ]
    _, live, _ = replay(cfg, instances, caught_up=True)
    sched, replayed, processor = replay(cfg, instances, caught_up=False)
    assert replayed.closed == []  # nothing passes the event clock after the last record
    processor.partition_caught_up(0)
    sched.start()
    assert live.records == replayed.records  # identical records, ids and names
    (job,) = live.records[0].jobs
    assert (
        job.name
        == "aet1-brain-tumor-20241128132013"
        == job_name("AET1", "brain_tumor", T0 + 13 * S)
    )


def test_open_groups_bound_commits_at_their_first_offset_until_closed() -> None:
    sched, sink, processor = make(settings())
    tracker: CommitTracker[int] = CommitTracker()
    instances = [
        make_instance(received_at=T0, study="A"),
        make_instance(received_at=T0, study="B"),
        make_instance(received_at=T0 + S, study="A"),
    ]
    hot_source(sched, positioned(instances, start=10)).subscribe(processor)
    sched.advance_to((T0 + 2 * S) / 1000)
    for offset in (10, 11, 12):
        tracker.mark_done(0, offset)
    assert processor.held_offsets() == {0: 10}  # the oldest first input of an open group
    assert tracker.safe_offset(0, processor.held_offsets().get(0)) == 10
    sched.start()
    assert len(sink.records) == 2  # closed: the sink holds their inputs until acked
    assert processor.held_offsets() == {}
    assert tracker.safe_offset(0, processor.held_offsets().get(0)) == 13


class FailingSink(RecordingSink):
    def group_closed(self, record: GroupClosed, superseded: Sequence[object] = ()) -> None:
        raise OSError("disk full")


def test_a_failing_sink_stops_the_processor_loudly() -> None:
    sched = TestScheduler()
    processor = ae_title_processor(FailingSink(sched), sched, settings())
    processor.on_next((0, 0, make_instance(received_at=T0)))
    sched.start()  # the sweep closes the group; the sink raises inside the timer
    assert isinstance(processor.failure, OSError)
    with pytest.raises(ProcessorFailedError, match="restart it"):
        processor.on_next((0, 1, make_instance(received_at=T0 + S)))
