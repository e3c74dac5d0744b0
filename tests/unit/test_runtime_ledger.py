"""The processor runtime's pure parts: commit metadata, the ledger index, its records."""

from __future__ import annotations

from dataclasses import replace

import pytest

from processors.reclaim import removal_request
from processors.runtime import LedgerIndex, decode_positions, encode_positions
from processors.runtime.records import event_id, record_key
from processors.runtime.sink import oldest_inputs
from streams.events import GroupClosed, GroupInstance, InputOffset, JobSpec, RecordKeys


def closed(*inputs: tuple[int, int]) -> GroupClosed:
    """A ``group.closed`` whose inputs are ``(partition, offset)`` pairs."""
    return GroupClosed(
        processor="AE Title Job Processor",
        ae_title="AET",
        group_by="(0020,000D)",
        group_key="1.2.3",
        reason="timeout",
        first_received_at=1,
        last_received_at=2,
        instances=(),
        inputs=tuple(InputOffset(p, o) for p, o in inputs),
        jobs=(),
        patient_id="P",
    )


# -- metadata ------------------------------------------------------------------------


def test_positions_round_trip_as_small_json() -> None:
    text = encode_positions({3: 120, 0: 7})
    assert text == '{"v":1,"ledger":{"0":7,"3":120}}'
    assert decode_positions(text) == {0: 7, 3: 120}
    assert decode_positions(encode_positions({})) == {}


@pytest.mark.parametrize(
    "text",
    ["", None, "jobs[0]@42", '{"v":2,"ledger":{"0":1}}', '{"v":1}', '{"v":1,"ledger":[1]}',
     '{"v":1,"ledger":{"x":1}}', '{"v":1,"ledger":{"0":-1}}', "[]"],
)  # fmt: skip
def test_foreign_or_broken_metadata_means_read_the_whole_ledger(text: str | None) -> None:
    assert decode_positions(text) is None


# -- placement and where to read -----------------------------------------------------


def test_same_partition_counts_put_a_partitions_records_on_the_same_jobs_partition() -> None:
    index = LedgerIndex(3, 3)
    assert index.jobs_partition_for(2) == 2
    assert index.home(1) == (1,)
    assert index.starts({0: None, 1: {1: 40}, 2: {2: 9, 0: 3}}) == {0: None, 1: 40, 2: 9}


def test_different_counts_let_the_key_decide_and_read_every_jobs_partition() -> None:
    index = LedgerIndex(3, 2)
    assert index.jobs_partition_for(2) is None
    assert index.home(2) == (0, 1)
    # The earliest stored position per jobs partition wins; a missing one means "all".
    assert index.starts({0: {0: 10, 1: 4}, 1: {0: 6, 1: 8}}) == {0: 6, 1: 4}
    assert index.starts({0: {0: 10}, 1: None}) == {0: None, 1: None}
    assert index.starts({0: {7: 1}}) == {0: None, 1: None}  # no such jobs partition


# -- covered inputs and resume positions ---------------------------------------------


def test_load_covers_inputs_at_or_after_the_commit_of_owned_partitions_only() -> None:
    index = LedgerIndex(3, 3)
    records = [
        (0, 10, closed((0, 3), (0, 4))),  # entirely below partition 0's commit (5)
        (0, 11, closed((0, 5), (0, 8))),
        (0, 12, closed((0, 6))),
        (1, 20, closed((1, 0))),  # partition 1 is not owned here
    ]
    covered = index.load([0, 2], {0: 5}, records, {0: 13, 2: 0})
    assert covered.offsets(0) == frozenset({5, 6, 8})
    assert not covered.covers(0, 4) and not covered.covers(1, 0)
    assert index.owned == frozenset({0, 2})
    assert index.pending(0) == 2


def test_positions_point_at_the_oldest_record_a_replay_from_the_commit_meets() -> None:
    index = LedgerIndex(3, 3)
    index.load([0], {0: 5}, [(0, 11, closed((0, 5), (0, 8))), (0, 12, closed((0, 6)))], {0: 13})
    assert index.positions(0, 5) == {0: 11}
    # Committing 7 passes the record at 12 (input 6) but not the one at 11 (input 8).
    assert index.positions(0, 7) == {0: 11}
    assert index.pending(0) == 1
    # Committing 9 passes everything: the next owner starts at the known end.
    assert index.positions(0, 9) == {0: 13}
    assert index.pending(0) == 0


def test_acknowledged_records_move_the_end_and_are_kept_until_passed() -> None:
    index = LedgerIndex(3, 3)
    index.load([1], {}, [], {1: 0})
    assert index.positions(1, 0) == {1: 0}
    index.acked(1, 0, closed((1, 0), (1, 1)))
    index.acked(1, 1, closed((1, 2)))
    assert index.positions(1, 1) == {1: 0}
    assert index.positions(1, 2) == {1: 1}
    assert index.positions(1, 3) == {1: 2}
    index.acked(2, 5, closed((2, 0)))  # another partition's record: only its end moves
    assert index.pending(1) == 0


def test_observed_ends_move_the_resume_position_past_other_writers_records() -> None:
    index = LedgerIndex(3, 3)
    index.load([0], {0: 5}, [(0, 11, closed((0, 8)))], {0: 13})
    index.observed({0: 40})  # the submitter wrote 27 records after ours, nothing in flight
    assert index.positions(0, 5) == {0: 11}  # our record past the commit still comes first
    assert index.positions(0, 9) == {0: 40}  # nothing of ours left: start at the observed end
    index.observed({0: 30})  # an older observation never moves it back
    assert index.positions(0, 9) == {0: 40}


def test_a_record_on_another_jobs_partition_is_named_in_the_metadata() -> None:
    # E.g. a custom processor's job over inputs of two partitions, placed by its first.
    index = LedgerIndex(2, 2)
    index.load([0, 1], {}, [], {0: 3, 1: 7})
    index.acked(0, 3, closed((0, 2), (1, 4)))
    assert index.positions(1, 4) == {0: 3, 1: 7}
    assert index.positions(1, 5) == {1: 7}


def test_unloaded_partitions_store_nothing_so_the_next_owner_reads_everything() -> None:
    index = LedgerIndex(3, 3)
    assert index.positions(0, 10) == {}
    index.load([0], {}, [], {0: 4})
    index.forget([0])
    assert index.positions(0, 10) == {}
    with pytest.raises(ValueError):
        LedgerIndex(0, 3)


# -- records the runtime writes --------------------------------------------------------


def test_a_record_holds_its_oldest_input_on_each_partition() -> None:
    assert oldest_inputs(closed((0, 5), (0, 7))) == [InputOffset(0, 5)]
    assert oldest_inputs(closed((1, 9), (0, 7), (1, 4))) == [InputOffset(0, 7), InputOffset(1, 4)]
    assert oldest_inputs(closed()) == []


def test_envelope_ids_are_a_function_of_the_log() -> None:
    job = JobSpec("job-1", "n", "breast", "pid", "higher")
    with_job = replace(closed((0, 5)), jobs=(job,))
    assert event_id("t.jobs", with_job) == event_id("t.jobs", replace(with_job, reason="x"))
    assert event_id("t.jobs", closed((0, 5))) == event_id("t.jobs", closed((0, 5)))
    assert event_id("t.jobs", closed((0, 5))) != event_id("t.jobs", closed((0, 6)))
    assert event_id("t.jobs", closed()) != event_id("t.jobs", closed())  # nothing to derive from
    keys = RecordKeys(b"a secret of the bus, 32 bytes...")
    assert record_key(with_job, keys) == keys("AET", "P") != RecordKeys()("AET", "P")


def test_a_removal_decided_with_a_group_takes_its_patient_and_times() -> None:
    group = replace(closed((0, 5)), first_received_at=100, last_received_at=900)
    copy = GroupInstance("1.2.3", "1.2", "1.2.1", "/s/old.dcm")
    removal = removal_request(
        processor="X", ae_title="AET", instances=[copy], reason="duplicate", group=group, now_ms=5
    )
    assert (removal.patient_id, removal.first_received_at, removal.last_received_at) == (
        "P",
        100,
        900,
    )
    assert (removal.instances, removal.inputs, removal.jobs) == ((copy,), (), ())
    alone = removal_request(
        processor="X", ae_title="AET", instances=[copy], reason="r", group=None, now_ms=5
    )
    assert (alone.patient_id, alone.last_received_at) == ("", 5)
