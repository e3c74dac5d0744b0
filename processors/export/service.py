"""One export attempt for one (request, destination): send what is owed, write the outcome.

:class:`ExportWorker` is the thin shell around the pure fold (:mod:`.state`), plan
(:mod:`.plan`) and rule (:mod:`.decide`). It is written against an injected
``publish(topic, key, envelope)`` coroutine that returns once the event is durable
(``streams.kafka.EventPublisher.publish`` in the role, acks=all), so the wiring is
small; every event it writes is folded into its ledger at once, and folding it again
when read back from the topic changes nothing.

An attempt sends the files still owed in batches of ``batch_size`` (one association or
one STOW-RS request each). After each batch but the last it writes
``export.progress``: a crash then costs at most the batch in flight, which is sent again
(peers keep one copy per SOP Instance UID: storescp overwrites its file, Orthanc keeps
the first). The attempt stops early after a batch whose link failed or whose peer is out
of resources. It ends with ``export.completed`` or ``export.failed`` (see
:func:`~processors.export.decide.decide`). A publish error propagates: the attempt is
then redone from what the ledger holds.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from processors.export.decide import Decision, decide, ends_attempt, instance_of
from processors.export.plan import attemptable, plan_batches
from processors.export.senders import Sender
from processors.export.state import ExportLedger, ExportState, FileState
from processors.submit.backoff import RetryPolicy
from streams.events import (
    Envelope,
    EventData,
    ExportFailed,
    ExportInstance,
    ExportProgress,
    envelope,
)
from streams.scu import CONNECT, SendItem, SendOutcome
from streams.storage.uris import uri_to_path

log = logging.getLogger(__name__)

Publish = Callable[[str, str, Envelope], Awaitable[object]]


class ExportWorker:
    """Run export attempts against ``senders`` (by destination name); see the module.

    ``clock`` returns epoch seconds and ``rand`` a float in ``[0, 1)``; both injected.
    """

    def __init__(
        self,
        *,
        ledger: ExportLedger,
        senders: Mapping[str, Sender],
        publish: Publish,
        topic: str,
        source: str,
        policy: RetryPolicy,
        batch_size: int = 100,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.ledger = ledger
        self.senders = senders
        self.publish = publish
        self.topic = topic
        self.source = source
        self.policy = policy
        self.batch_size = batch_size
        self.clock = clock
        self.rand = rand

    async def attempt(self, request_id: str, destination: str) -> Envelope | None:
        """Run the next attempt; returns the event that ended it (already published and
        folded), or ``None`` when there is nothing to attempt."""
        state = self.ledger.get(request_id, destination)
        if state is None or not attemptable(state):
            return None
        attempt = state.attempts + 1
        sender = self.senders.get(destination)
        if sender is None:
            batches = [tuple(_not_configured(f, destination) for f in state.owed())]
        else:
            batches = await self._send_all(state, attempt, sender)
        decision = decide(
            state,
            attempt,
            batches,
            policy=self.policy,
            now_ms=self._now_ms(),
            rand=self.rand,
        )
        env = await self._write(request_id, decision.event)
        self._log(state, attempt, decision)
        return env

    async def _send_all(
        self, state: ExportState, attempt: int, sender: Sender
    ) -> list[tuple[ExportInstance, ...]]:
        plan = plan_batches(state.owed(), self.batch_size)
        batches: list[tuple[ExportInstance, ...]] = []
        for n, files in enumerate(plan):
            instances, outcomes = await self._send(sender, files, state.destination)
            batches.append(instances)
            if n == len(plan) - 1 or ends_attempt(outcomes):
                break
            progress = ExportProgress(state.request_id, state.destination, attempt, instances)
            await self._write(state.request_id, progress)
        return batches

    async def _send(
        self, sender: Sender, files: Sequence[FileState], destination: str
    ) -> tuple[tuple[ExportInstance, ...], list[SendOutcome]]:
        items: list[SendItem] = []
        local: list[FileState] = []
        instances: dict[str, ExportInstance] = {}
        for f in files:
            try:
                items.append(SendItem.file(uri_to_path(f.uri), label=f.uri))
                local.append(f)
            except ValueError:
                instances[f.uri] = ExportInstance(
                    f.sop_instance_uid, f.uri, "failed", None, "not a local file URI"
                )
        outcomes: list[SendOutcome] = []
        if items:
            try:
                outcomes = await sender.send(items)
            except Exception as exc:  # a sender must not raise; contain one that does
                log.exception("sender of %s raised", destination)
                outcomes = [
                    SendOutcome(i, item.label, "failed", reason=CONNECT, error=_raised(exc))
                    for i, item in enumerate(items)
                ]
        for f, outcome in zip(local, outcomes, strict=True):
            instances[f.uri] = instance_of(outcome, f)
        return tuple(instances[f.uri] for f in files), outcomes

    async def _write(self, key: str, record: EventData) -> Envelope:
        env = envelope(record, source=self.source, time_ms=self._now_ms())
        await self.publish(self.topic, key, env)
        self.ledger.apply(key, env)
        return env

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _log(self, state: ExportState, attempt: int, decision: Decision) -> None:
        event = decision.event
        where = f"export {state.request_id} to {state.destination}"
        if not isinstance(event, ExportFailed):
            log.info("%s completed on attempt %d (%d files)", where, attempt, len(state.files))
        elif decision.retry_delay_s is not None:
            log.warning(
                "%s attempt %d failed, retry in %.3g s: %s",
                where, attempt, decision.retry_delay_s, event.error,
            )  # fmt: skip
        else:
            log.error(
                "%s dead-lettered after attempt %d (files kept; `dicom-adapter export retry "
                "%s`): %s",
                where, attempt, state.request_id, event.error,
            )  # fmt: skip


def _not_configured(file: FileState, destination: str) -> ExportInstance:
    return ExportInstance(
        file.sop_instance_uid,
        file.uri,
        "failed",
        None,
        f"destination {destination!r} is not in export.destinations; add it and retry",
    )


def _raised(exc: Exception) -> str:
    return f"sender error: {type(exc).__name__}"
