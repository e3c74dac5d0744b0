"""What a sender's outcomes mean for an export (pure; clock and randomness injected).

**The rule** — per instance, from :class:`streams.scu.SendOutcome`:

* *delivered*: Success or Warning (0x0000, 0x0001, 0xBxxx), and 0x0111 "duplicate SOP
  instance" (the peer already holds it: typically our own earlier send, before a crash);
* *retriable* — trying the same instance later can succeed:
  0xA7xx "out of resources" and 0x0213 "resource limitation"; no connection; the
  association rejected (transient *or* permanent: an AE table is often fixed while we
  wait, and ``max_attempts`` bounds the cost), aborted or dropped; no answer in time; an
  instance not sent because its batch stopped; a file that exists but could not be read;
  a STOW-RS answer that was unreadable or did not list the instance; HTTP 5xx, 408, 429;
* *permanent* — the same request will be refused again: every other failure status
  (0xA9xx "data set does not match SOP class", 0xC000-0xCFFF "cannot understand",
  0x0122 "SOP class not supported", 0x0124 "not authorized", ...); HTTP 4xx other than
  408/429; a file that is missing or not DICOM; no presentation context for its SOP
  class; a conversion that failed.

A permanently refused instance never blocks the others: they are delivered, the attempt's
event names it, and the destination ends ``dead`` (files kept) once nothing retriable is
left — an operator fixes the cause and asks ``export retry``.

**Per attempt**: nothing owed and nothing refused for good → ``export.completed``;
something retriable left and attempts left in the round → ``export.failed(will_retry)``
with the backoff of :class:`~processors.submit.backoff.RetryPolicy`; otherwise
``export.failed(will_retry=false)``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from processors.export.state import ExportState, FileState
from processors.submit.backoff import RetryPolicy
from streams.events import ExportCompleted, ExportFailed, ExportInstance, ExportStatus
from streams.scu import (
    ABORTED,
    BAD_RESPONSE,
    CONNECT,
    DROPPED,
    HTTP_ERROR,
    NOT_CONFIRMED,
    NOT_SENT,
    REJECTED_PERMANENT,
    REJECTED_TRANSIENT,
    TIMEOUT,
    UNREADABLE,
    SendOutcome,
    hex_status,
)

Verdict = Literal["delivered", "retriable", "permanent"]

DUPLICATE_SOP_INSTANCE = 0x0111
RESOURCE_LIMITATION = 0x0213
RETRIABLE_HTTP = frozenset({408, 429})
RETRIABLE_REASONS = frozenset(
    {
        CONNECT,
        REJECTED_TRANSIENT,
        REJECTED_PERMANENT,
        ABORTED,
        DROPPED,
        TIMEOUT,
        NOT_SENT,
        UNREADABLE,
        BAD_RESPONSE,
        NOT_CONFIRMED,
    }
)
#: Reasons that concern the peer or the link, not one instance: the rest of the attempt
#: would fail the same way, so it stops after such a batch.
LINK_REASONS = frozenset(
    {CONNECT, REJECTED_TRANSIENT, REJECTED_PERMANENT, ABORTED, DROPPED, TIMEOUT, NOT_SENT}
)


def classify(outcome: SendOutcome) -> Verdict:
    """Apply the module's rule to one outcome."""
    if outcome.kind == "sent":
        return "delivered"
    if outcome.kind == "refused":
        code = outcome.status if outcome.status is not None else 0xC000
        if code == DUPLICATE_SOP_INSTANCE:
            return "delivered"
        if 0xA700 <= code <= 0xA7FF or code == RESOURCE_LIMITATION:
            return "retriable"
        return "permanent"
    if outcome.reason == HTTP_ERROR:
        http = outcome.http_status or 0
        return "retriable" if http >= 500 or http in RETRIABLE_HTTP else "permanent"
    return "retriable" if outcome.reason in RETRIABLE_REASONS else "permanent"


def instance_of(outcome: SendOutcome, file: FileState) -> ExportInstance:
    """The event record of one outcome for one file of the request."""
    verdict = classify(outcome)
    uid = outcome.sop_instance_uid or file.sop_instance_uid
    if verdict == "delivered":
        note = "" if outcome.kind == "sent" else "already at the peer (0x0111)"
        return ExportInstance(uid, file.uri, "sent", outcome.status, note)
    status: ExportStatus = "refused" if outcome.kind == "refused" else "failed"
    error = outcome.error or (outcome.reason or status)
    return ExportInstance(uid, file.uri, status, outcome.status, error, verdict == "retriable")


def ends_attempt(outcomes: Sequence[SendOutcome]) -> bool:
    """After this batch, stop the attempt: the link failed (nothing else would get
    through now) or the peer is out of resources."""
    for outcome in outcomes:
        if outcome.reason in LINK_REASONS:
            return True
        if outcome.reason == HTTP_ERROR and classify(outcome) == "retriable":
            return True
        if outcome.kind == "refused" and classify(outcome) == "retriable":
            return True
    return False


@dataclass(frozen=True, slots=True)
class Decision:
    """The event that ends an attempt and, when it will be retried, after how long."""

    event: ExportCompleted | ExportFailed
    retry_delay_s: float | None = None


def decide(
    state: ExportState,
    attempt: int,
    batches: Sequence[Sequence[ExportInstance]],
    *,
    policy: RetryPolicy,
    now_ms: int,
    rand: Callable[[], float],
) -> Decision:
    """The final event of ``attempt`` for ``state`` (as it was when the attempt began),
    given the per-batch instance outcomes (progress events were written for all but the
    last batch)."""
    done = [i for batch in batches for i in batch]
    delivered = {i.uri for i in done if i.status == "sent"}
    refused = {i.uri for i in done if i.status != "sent" and not i.retriable}
    owed = [f for f in state.owed() if f.uri not in delivered and f.uri not in refused]
    given_up = [f for f in state.given_up() if f.uri not in delivered]
    last = tuple(batches[-1]) if batches else ()
    if not owed and not given_up and not refused:
        return Decision(ExportCompleted(state.request_id, state.destination, attempt, last))
    undelivered = [i for batch in batches[:-1] for i in batch if i.status != "sent"]
    instances = (*undelivered, *last)
    error = summary(state, done, len(owed), len(given_up) + len(refused))
    in_round = attempt - state.round_start
    if owed and policy.will_retry(in_round):
        delay = policy.delay_s(in_round, rand)
        retry_at = now_ms + round(delay * 1000)
        event = ExportFailed(
            state.request_id, state.destination, attempt, error, True, retry_at, instances
        )
        return Decision(event, delay)
    if owed:
        error += f" (gave up after {in_round} attempts)"
    event = ExportFailed(state.request_id, state.destination, attempt, error, False, 0, instances)
    return Decision(event)


def summary(state: ExportState, done: Sequence[ExportInstance], owed: int, refused: int) -> str:
    """``2 of 10 files not delivered to pacs (1 retriable, 1 refused for good): ...``"""
    total = len(state.files)
    missing = total - state.delivered - sum(1 for i in done if i.status == "sent")
    causes = Counter(_cause(i) for i in done if i.status != "sent")
    listed = ", ".join(f"{n} {cause}" for cause, n in causes.most_common(4))
    text = (
        f"{missing} of {total} files not delivered to {state.destination} "
        f"({owed} retriable, {refused} refused for good)"
    )
    return f"{text}: {listed}" if listed else text


def _cause(instance: ExportInstance) -> str:
    if instance.status == "refused" and instance.code is not None:
        return f"refused {hex_status(instance.code)}"
    return instance.error[:100] or instance.status
