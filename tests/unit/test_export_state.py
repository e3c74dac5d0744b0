"""The export ledger fold: states per (request, destination), idempotent by construction."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.export import ExportLedger, fold
from streams.events import (
    Envelope,
    EventData,
    ExportCompleted,
    ExportFailed,
    ExportFile,
    ExportInstance,
    ExportProgress,
    ExportRequested,
    ExportRetryRequested,
    envelope,
)

_ids = itertools.count()
FILES = tuple(ExportFile(f"/data/r/{n}.dcm", f"1.2.{n}") for n in range(4))


def ev(data: EventData, t: int = 1000) -> Envelope:
    return envelope(data, source="test", time_ms=t, event_id=f"e{next(_ids)}")


def sent(n: int, code: int = 0) -> ExportInstance:
    return ExportInstance(f"1.2.{n}", f"/data/r/{n}.dcm", "sent", code)


def bad(n: int, *, retriable: bool, code: int | None = 0xA900) -> ExportInstance:
    status = "refused" if code is not None else "failed"
    return ExportInstance(f"1.2.{n}", f"/data/r/{n}.dcm", status, code, "no", retriable)


def request(*destinations: str, files: tuple[ExportFile, ...] = FILES) -> Envelope:
    return ev(ExportRequested("r1", destinations, files, job_id="j1", reason="seg"))


def test_a_request_opens_one_pending_state_per_destination() -> None:
    ledger = ExportLedger()
    changed = ledger.apply("r1", request("pacs", "web", "pacs"))
    assert [(s.destination, s.status) for s in changed] == [("pacs", "pending"), ("web", "pending")]
    pacs = ledger.get("r1", "pacs")
    assert pacs is not None and pacs.requested and pacs.job_id == "j1"
    assert [f.uri for f in pacs.owed()] == [f.uri for f in FILES]
    assert ledger.apply("r1", request("other")) == ()  # the first request defines it
    assert ledger.get("r1", "other") is None
    assert [s.destination for s in ledger.request("r1")] == ["pacs", "web"]


def test_progress_marks_delivered_files_which_are_never_owed_again() -> None:
    ledger = fold([("r1", request("pacs"))])
    progress = ev(ExportProgress("r1", "pacs", 1, (sent(0), sent(1))))
    ledger.apply("r1", progress)
    state = ledger.get("r1", "pacs")
    assert state is not None and state.status == "pending" and state.delivered == 2
    assert [f.uri for f in state.owed()] == ["/data/r/2.dcm", "/data/r/3.dcm"]
    assert ledger.apply("r1", progress) == ()  # the same envelope again: nothing
    # a later failure of the same instances cannot un-deliver them
    ledger.apply("r1", ev(ExportFailed("r1", "pacs", 1, "x", True, 5, (bad(0, retriable=True),))))
    state = ledger.get("r1", "pacs")
    assert state is not None and state.delivered == 2 and state.status == "failed"


def test_completed_is_final() -> None:
    ledger = fold([("r1", request("pacs"))])
    ledger.apply("r1", ev(ExportCompleted("r1", "pacs", 1, tuple(sent(n) for n in range(4)))))
    late = ev(ExportFailed("r1", "pacs", 2, "late", False))
    assert ledger.apply("r1", late) == ()
    state = ledger.get("r1", "pacs")
    assert state is not None and (state.status, state.attempts, state.delivered) == (
        "completed",
        1,
        4,
    )
    assert state.owed() == ()


def test_failures_count_once_per_attempt_and_permanent_ones_are_given_up() -> None:
    ledger = fold([("r1", request("pacs"))])
    first = ExportFailed(
        "r1", "pacs", 1, "1 refused", True, 9000, (sent(0), bad(1, retriable=False), sent(2))
    )
    ledger.apply("r1", ev(first))
    state = ledger.get("r1", "pacs")
    assert state is not None
    assert (state.status, state.attempts, state.retry_at) == ("failed", 1, 9000)
    assert [f.uri for f in state.owed()] == ["/data/r/3.dcm"]
    assert [f.uri for f in state.given_up()] == ["/data/r/1.dcm"]
    assert ledger.apply("r1", ev(first)) == ()  # re-written after a crash: same attempt
    dead = ExportFailed("r1", "pacs", 2, "gave up", False, 0, (bad(3, retriable=True),))
    ledger.apply("r1", ev(dead))
    state = ledger.get("r1", "pacs")
    assert state is not None and (state.status, state.attempts, state.retry_at) == ("dead", 2, 0)
    assert state.last_error == "gave up"


def test_retry_reopens_only_dead_ones_and_owes_the_given_up_again() -> None:
    ledger = fold([("r1", request("pacs", "web"))])
    ledger.apply("r1", ev(ExportFailed("r1", "pacs", 1, "x", False, 0, (bad(1, retriable=False),))))
    ledger.apply("r1", ev(ExportFailed("r1", "web", 1, "y", True, 5, (bad(1, retriable=True),))))
    changed = ledger.apply("r1", ev(ExportRetryRequested("r1", "", "ops@host", "fixed")))
    assert [s.destination for s in changed] == ["pacs"]  # web is not dead
    pacs = ledger.get("r1", "pacs")
    assert pacs is not None
    assert (pacs.status, pacs.round_start, pacs.attempts_in_round, pacs.retry_requests) == (
        "pending",
        1,
        0,
        1,
    )
    assert len(pacs.owed()) == 4 and pacs.given_up() == ()
    # a failure of the closed round, read late, changes nothing
    ledger.apply("r1", ev(ExportFailed("r1", "pacs", 1, "old", False, 0)))
    again = ledger.get("r1", "pacs")
    assert again is not None and again.status == "pending"
    assert again.history[-1].event == "export.retry_requested"
    assert "ops@host fixed" in again.history[-1].detail


def test_a_delivered_sop_instance_is_not_owed_under_another_uri() -> None:
    files = (ExportFile("/a/x.dcm", "1.2.9"), ExportFile("/b/x.dcm", "1.2.9"))
    ledger = fold([("r1", request("pacs", files=files))])
    ledger.apply(
        "r1",
        ev(ExportProgress("r1", "pacs", 1, (ExportInstance("1.2.9", "/a/x.dcm", "sent", 0),))),
    )
    state = ledger.get("r1", "pacs")
    assert state is not None and state.owed() == ()


def test_outcomes_without_their_request_are_shown_but_never_attempted() -> None:
    ledger = ExportLedger()
    ledger.apply("r9", ev(ExportFailed("r9", "pacs", 3, "x", True, 5)))
    state = ledger.get("r9", "pacs")
    assert state is not None and not state.requested and state.status == "failed"


# -- idempotence, as a property ------------------------------------------------------------

instances = st.builds(
    ExportInstance,
    sop_instance_uid=st.sampled_from([f"1.2.{n}" for n in range(4)]),
    uri=st.sampled_from([f"/data/r/{n}.dcm" for n in range(4)]),
    status=st.sampled_from(["sent", "refused", "failed"]),
    code=st.none() | st.sampled_from([0, 0xA700, 0xA900]),
    retriable=st.booleans(),
)
outcome_events = st.one_of(
    st.builds(
        ExportProgress,
        st.just("r1"),
        st.sampled_from(["pacs", "web"]),
        st.integers(1, 4),
        st.lists(instances, max_size=3).map(tuple),
    ),
    st.builds(
        ExportCompleted,
        st.just("r1"),
        st.sampled_from(["pacs", "web"]),
        st.integers(1, 4),
        st.lists(instances, max_size=3).map(tuple),
    ),
    st.builds(
        ExportFailed,
        st.just("r1"),
        st.sampled_from(["pacs", "web"]),
        st.integers(1, 4),
        st.just("e"),
        st.booleans(),
        st.integers(0, 10**6),
        st.lists(instances, max_size=3).map(tuple),
    ),
    st.builds(ExportRetryRequested, st.just("r1"), st.sampled_from(["", "pacs", "web"])),
)


@settings(max_examples=200)
@given(st.lists(outcome_events, max_size=12), st.data())
def test_applying_any_event_twice_changes_nothing(records, data) -> None:
    log = [("r1", request("pacs", "web"))] + [("r1", ev(r, t)) for t, r in enumerate(records)]
    once = fold(log)
    repeats = data.draw(st.lists(st.integers(0, len(log) - 1), max_size=6))
    doubled = list(log)
    for index in sorted(repeats, reverse=True):
        doubled.insert(index + 1, log[index])  # right after itself
    twice = fold([*doubled, *log])  # and the whole log read back once more
    assert dict(once.states) == dict(twice.states)
