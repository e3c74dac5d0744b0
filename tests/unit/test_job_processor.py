"""The ``JobProcessor`` base: dispatch, filtering, covered inputs, provided helpers."""

from __future__ import annotations

import pytest
from helpers.instances import RecordingSink, make_instance
from reactivex.testing import TestScheduler

from processors.base import JobProcessor
from processors.exactly_once import CoveredInputs
from processors.jobnames import fix_job_name
from streams.events import GroupClosed, InputOffset, InstanceReceived

Pos = InputOffset


class EveryInstanceIsAJob(JobProcessor):
    """A custom processor: one job per instance, at once."""

    name = "Every Instance"
    REQUIRED_TAGS = ("00080060",)

    def handle_instance(self, instance: InstanceReceived, position: InputOffset) -> None:
        self.submit_pipeline_job(
            f"{self.ae_title}-{instance.sop_instance_uid}",
            "PIPE1",
            "immediate",
            [instance],
            inputs=[position],
            pipeline_name="one",
        )
        self.remove_instances([instance], "custom")


def make() -> tuple[RecordingSink, EveryInstanceIsAJob]:
    sched = TestScheduler()
    sink = RecordingSink(sched)
    return sink, EveryInstanceIsAJob("AET1", {"anything": 1}, sink, sched)


def test_custom_processor_submits_jobs_through_the_sink() -> None:
    sink, processor = make()
    instance = make_instance(received_at=5, sop="1.2.3")
    processor.on_next((2, 40, instance))
    (record,) = sink.records
    assert isinstance(record, GroupClosed)
    assert record.inputs == (Pos(2, 40),)
    assert record.processor == "Every Instance" and record.reason == "submitted"
    (job,) = record.jobs
    assert job.name == fix_job_name("AET1-1.2.3") == "aet1-1-2-3"
    assert (job.pipeline_id, job.priority, job.pipeline_name) == ("PIPE1", "immediate", "one")
    assert [(uris, reason) for _, _, uris, reason in sink.removed] == [((instance.uri,), "custom")]
    assert processor.counters.jobs == 1 and processor.counters.removed == 1
    # Same input, same id: a replay is recognisable.
    sink2, again = make()
    again.on_next((2, 40, instance))
    assert sink2.records[0].jobs[0].job_id == job.job_id


def test_other_ae_titles_are_filtered_and_covered_inputs_skipped() -> None:
    sink, processor = make()
    processor.set_covered(CoveredInputs.from_records([_record_with_input(0, 1)]))
    processor.on_next((0, 0, make_instance(received_at=0, ae="OTHER")))
    processor.on_next((0, 1, make_instance(received_at=0)))
    processor.on_next((0, 2, make_instance(received_at=0)))
    assert [r.inputs for r in sink.records] == [(Pos(0, 2),)]
    assert processor.counters.not_supported == 1
    assert processor.counters.covered == 1
    assert processor.counters.instances == 1


def test_required_tags_and_identity() -> None:
    assert EveryInstanceIsAJob.required_tags("AET1", {}) == ("00080060",)
    _, processor = make()
    assert str(processor) == "Every Instance" and processor.ae_title == "AET1"
    assert processor.held_offsets() == {}


def test_completion_and_errors_stop_the_processor() -> None:
    _, processor = make()
    processor.on_error(RuntimeError("broker gone"))
    assert processor.is_stopped
    processor.on_completed()  # idempotent
    assert processor.is_stopped


def test_bad_submissions_are_refused() -> None:
    _, processor = make()
    with pytest.raises(ValueError, match="pipeline id is blank"):
        processor.submit_pipeline_job("x", " ", "normal", [make_instance(received_at=0)])
    with pytest.raises(ValueError, match="at least one instance"):
        processor.submit_pipeline_job("x", "P", "normal", [])
    with pytest.raises(ValueError, match="non-blank AE title"):
        EveryInstanceIsAJob(" ", {}, RecordingSink(TestScheduler()), TestScheduler())


def _record_with_input(partition: int, offset: int) -> GroupClosed:
    return GroupClosed(
        processor="p",
        ae_title="AET1",
        group_by="",
        group_key="k",
        reason="submitted",
        first_received_at=0,
        last_received_at=0,
        instances=(),
        inputs=(Pos(partition, offset),),
        jobs=(),
    )
