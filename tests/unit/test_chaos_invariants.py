"""The chaos suite's checker finds each kind of violation it claims to (pure).

A checker that cannot fail would make every chaos run pass; each test here breaks one
invariant on a small, otherwise good run and expects exactly that violation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from streams.events import (
    Envelope,
    GroupClosed,
    GroupInstance,
    InstancesRemoved,
    JobFailed,
    JobSpec,
    JobSubmitted,
    envelope,
)
from tests.chaos.driver import unique_events
from tests.chaos.invariants import RunFacts, Window, check, log_violations
from tests.chaos.plan import Instance, make_plan
from tests.chaos.senders import Outcome, parse_storescu

A = Instance("CHAOS-ST", "CHAOS-P1", "1.2.1", "1.2.1.1", "1.2.1.1.1", 1)
B = Instance("CHAOS-ST", "CHAOS-P1", "1.2.1", "1.2.1.1", "1.2.1.1.2", 2)


def _group(items: list[Instance], job_ids: tuple[str, ...] = ("j1",)) -> GroupClosed:
    return GroupClosed(
        processor="p",
        ae_title="CHAOS-ST",
        group_by="0020,000D",
        group_key=items[0].study,
        reason="timeout",
        first_received_at=1,
        last_received_at=2,
        instances=tuple(
            GroupInstance(i.sop, i.study, i.series, f"file:///s/{i.sop}.dcm") for i in items
        ),
        inputs=(),
        jobs=tuple(JobSpec(j, f"n-{j}", "breast", "pid", "normal") for j in job_ids),
    )


def _submitted(job_id: str, items: list[Instance]) -> JobSubmitted:
    return JobSubmitted(job_id, "n", "CHAOS-ST", "breast", "pid", "normal", "/p", (), 1)


def _facts(**changes: object) -> RunFacts:
    good = RunFacts(
        outcomes=[
            Outcome(A, True, True, "0x0000", "pynetdicom"),
            Outcome(B, True, True, "Success", "dcmtk"),
        ],
        ledger=[_group([A, B]), _submitted("j1", [A, B]), InstancesRemoved((A.sop, B.sop))],
        files={},
        pipelines=["breast"],
        refused_studies=frozenset(),
        created=["j1"],
        windows={A.sop: Window(0, 0.0, 1.0), B.sop: Window(0, 0.0, 1.0)},
    )
    return replace(good, **changes)  # type: ignore[arg-type]


def test_a_good_run_has_no_violation() -> None:
    verdict = check(_facts())
    assert verdict.violations == []
    assert verdict.figures["acked"] == 2 and verdict.figures["submitted"] == 1


def test_an_acked_instance_in_no_job_is_lost() -> None:
    verdict = check(_facts(ledger=[_group([A]), _submitted("j1", [A])]))
    assert any("acked 1.2.1.1.2 is in 0 breast jobs" in v for v in verdict.violations)


def test_an_acked_instance_in_two_jobs_is_a_duplicate() -> None:
    ledger = [_group([A, B]), _group([B], ("j2",)), _submitted("j1", []), _submitted("j2", [])]
    verdict = check(_facts(ledger=ledger, created=["j1", "j2"]))
    assert any("is in 2 breast jobs" in v for v in verdict.violations)


def test_a_job_submitted_or_created_twice_is_a_duplicate() -> None:
    ledger = [_group([A, B]), _submitted("j1", []), _submitted("j1", [])]
    verdict = check(_facts(ledger=ledger, created=["j1", "j1"]))
    assert any("submitted 2 times" in v for v in verdict.violations)
    assert any("created job j1 2 times" in v for v in verdict.violations)


def test_files_left_for_a_submitted_group_or_lost_for_an_unsubmitted_one() -> None:
    verdict = check(_facts(files={A.sop: "/s/a.dcm"}))
    assert any("of submitted group" in v for v in verdict.violations)
    unsubmitted = [_group([A, B]), JobFailed("j1", 3, "refused", False)]
    verdict = check(
        _facts(
            ledger=unsubmitted,
            created=[],
            files={A.sop: "/s/a.dcm"},
            refused_studies=frozenset({"1.2.1"}),
        )
    )
    assert any("1.2.1.1.2 of unsubmitted group" in v for v in verdict.violations)
    assert not any("1.2.1.1.1 of unsubmitted" in v for v in verdict.violations)


def test_a_job_mixing_studies_is_dead_when_one_of_them_is_refused() -> None:
    """Chaos seeds 2030, 2035, 2044, 2046: a group by Modality held instances of the
    refused study and of others; the platform refused the whole job."""
    other = Instance("CHAOS-ST", "CHAOS-P2", "1.2.9", "1.2.9.1", "1.2.9.1.1", 1)
    mixed = [_group([A, other]), JobFailed("j1", 3, "refused", False)]
    outcomes = [
        Outcome(A, True, True, "0x0000", "dcmtk"),
        Outcome(other, True, True, "0x0000", "dcmtk"),
    ]
    facts = _facts(
        ledger=mixed, outcomes=outcomes, created=[], refused_studies=frozenset({"1.2.1"})
    )
    assert not any("never submitted" in v for v in check(facts).violations)
    # Without a refused study in it, a dead job is a violation for each instance.
    clean = _facts(ledger=mixed, outcomes=outcomes, created=[], refused_studies=frozenset())
    assert any("with acked 1.2.9.1.1 was never submitted" in v for v in check(clean).violations)


def test_a_refused_store_in_a_job_or_with_a_file_or_a_wrong_status() -> None:
    refused = Outcome(B, True, False, "0xC211", "pynetdicom")
    verdict = check(_facts(outcomes=[_facts().outcomes[0], refused], files={B.sop: "/s/b"}))
    assert any("refused 1.2.1.1.2 is in breast job" in v for v in verdict.violations)
    assert any("refused 1.2.1.1.2 left a file" in v for v in verdict.violations)
    assert any("not 0xA700" in v for v in verdict.violations)


def test_no_answer_is_allowed_only_while_its_scp_was_down() -> None:
    silent = Outcome(B, False, False, "no response", "pynetdicom")
    outcomes = [_facts().outcomes[0], silent]
    verdict = check(_facts(outcomes=outcomes))
    assert any("though its SCP was not down" in v for v in verdict.violations)
    verdict = check(_facts(outcomes=outcomes, downtimes=[(0, 0.5, 3.0)]))
    assert verdict.violations == []
    verdict = check(_facts(outcomes=outcomes, downtimes=[(1, 0.5, 3.0)]))  # the other SCP
    assert any("though its SCP was not down" in v for v in verdict.violations)


def test_storescu_output_is_read_per_file() -> None:
    output = (
        f"I: Sending file: /x/{A.sop}.dcm\nI: Received Store Response (Success)\n"
        f"I: Sending file: /x/{B.sop}.dcm\nI: Received Store Response (Refused: OutOfResources)\n"
    )
    a, b = parse_storescu(output, [A, B])
    assert (a.answered, a.acked, b.answered, b.acked) == (True, True, True, False)
    assert b.status == "Refused: OutOfResources"
    (none,) = parse_storescu("E: Association Request Failed", [A])
    assert (none.answered, none.acked) == (False, False)


def test_a_plan_is_a_function_of_its_seed() -> None:
    assert make_plan(7) == make_plan(7)
    assert make_plan(7) != make_plan(8)
    kinds = sorted(f.kind for f in make_plan(7).faults)
    assert kinds == ["disk_full", "kill_processor", "kill_scp", "kill_submitter", "pause_broker"]


def test_a_ledger_event_written_twice_counts_once_unless_its_content_differs() -> None:
    @dataclass
    class Rec:
        envelope: Envelope

    group = _group([A, B])
    first = Rec(envelope(group, source="p0", time_ms=1, event_id="e1"))
    same = [first, Rec(envelope(group, source="p1", time_ms=2, event_id="e1"))]
    events, copies, conflicts = unique_events(same)
    assert (events, copies, conflicts) == ([group], 1, [])
    other = replace(group, instances=group.instances[:1])
    differs = [first, Rec(envelope(other, source="p1", time_ms=2, event_id="e1"))]
    assert unique_events(differs)[2] == ["event e1 was written twice with different content"]


def test_a_patient_id_in_a_record_key_is_a_violation() -> None:
    from streams.events import RecordKeys

    good = RecordKeys()("CT", "CHAOS-P-1")
    assert check(_facts(keys=[good, good], phi="CHAOS-P")).violations == []
    bad = check(_facts(keys=[good, "CT/CHAOS-P-1"], phi="CHAOS-P")).violations
    assert bad == ["record key 'CT/CHAOS-P-1' is not <AE>/<HMAC> (a patient id in a key?)"]


def test_the_log_check_covers_every_level() -> None:
    from tests.chaos.driver import Settings

    assert Settings().log_level == "DEBUG"  # the roles run at DEBUG in every chaos run
    debug = '{"level": "DEBUG", "logger": "pynetdicom.dsutils", "message": "(0010,0020) CHAOS-P-3"}'
    info = '{"level": "INFO", "logger": "streams.scp", "message": "stored 1.2.3"}'
    assert log_violations("scp-1", f"{info}\n", "CHAOS-P") == []
    [found] = log_violations("scp-1", f"{info}\n{debug}\n", "CHAOS-P")
    assert found.startswith("scp-1 logged a patient id (1 lines)")


def test_a_traceback_counts_at_info_and_above_only() -> None:
    debug = '{"level":"DEBUG","message":"check failed","exc":"Traceback (most recent call last)"}'
    error = '{"level":"ERROR","message":"crashed","exc":"Traceback (most recent call last)"}'
    assert log_violations("p", debug, "CHAOS-PAT-") == []
    [found] = log_violations("p", f"{debug}\n{error}", "CHAOS-PAT-")
    assert found.startswith("p logged a traceback")


def test_a_key_grouped_twice_is_a_split_unless_sent_the_timeout_apart() -> None:
    ledger = [
        _group([A]),
        _group([B], ("j2",)),
        _submitted("j1", []),
        _submitted("j2", []),
        InstancesRemoved((A.sop, B.sop)),
    ]

    def sent(b_at: float) -> list[Outcome]:
        return [
            Outcome(A, True, True, "0x0000", "pynetdicom", (0.0, 1.0)),
            Outcome(B, True, True, "Success", "dcmtk", (b_at, b_at + 0.5)),
        ]

    verdict = check(_facts(ledger=ledger, created=["j1", "j2"], outcomes=sent(2.0)))
    assert verdict.violations == [
        "CHAOS-ST key 1.2.1 split though received 1.0 s apart (timeout 5 s)"
    ]
    assert verdict.figures["split_keys"] == 1
    # A sender that got through late (its SCP was down): apart by more than the timeout.
    verdict = check(_facts(ledger=ledger, created=["j1", "j2"], outcomes=sent(5.5)))
    assert verdict.violations == [] and verdict.figures["split_keys"] == 1


def test_receipt_times_at_the_scps_decide_a_split_over_the_senders_spans() -> None:
    """Chaos seed 2004: a storescu run spans seconds under load, so its span said 3.5 s
    where the SCPs received the two groups 6.2 s apart -- a legitimate split."""
    ledger = [
        _group([A]),
        _group([B], ("j2",)),
        _submitted("j1", []),
        _submitted("j2", []),
        InstancesRemoved((A.sop, B.sop)),
    ]
    outcomes = [
        Outcome(A, True, True, "Success", "dcmtk", (0.0, 3.4)),
        Outcome(B, True, True, "Success", "dcmtk", (6.9, 9.5)),
    ]

    def facts(b_received: float) -> RunFacts:
        return _facts(
            ledger=ledger,
            created=["j1", "j2"],
            outcomes=outcomes,
            received={A.sop: 1.0, B.sop: b_received},
        )

    assert check(facts(7.2)).violations == []
    assert check(facts(3.0)).violations == [
        "CHAOS-ST key 1.2.1 split though received 2.0 s apart (timeout 5 s)"
    ]
