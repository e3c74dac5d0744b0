"""C-STORE SCU: a batch of Part 10 instances to one peer over one association (PS3.4 B).

:class:`CStoreSender` reads every item's identity, proposes the contexts of
:mod:`streams.scu.contexts` (the files' own transfer syntaxes first, Explicit/Implicit VR
Little Endian as fallbacks), sends the instances one after the other and reports one
:class:`~streams.scu.outcome.SendOutcome` per item, in the batch's order. It never raises
for a per-item or per-peer problem. A batch needing more than 128 contexts (very many
SOP classes) is sent over as few associations as fit, one after the other.

pynetdicom runs in the calling thread (``send_batch``) or in a worker thread
(``await send(...)``, via :func:`asyncio.to_thread`). Its sharp edges, handled here:

* TCP_NODELAY and quick ACKs on the socket (DESIGN.md, "DICOM over TCP stalls"): without
  them every C-STORE to DCMTK or Orthanc waits ~88 ms on delayed ACKs;
* the requestor race of pynetdicom 3.0 (ingest baselines, pitfall 5; docs/reliability.md):
  the reactor can take a C-STORE-RSP meant for ``send_c_store`` and drop it; responses
  are handed back to the DIMSE queue instead;
* pynetdicom leaves the socket open when the connect fails or the peer resets.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import AE, evt

from streams.config.models import DEFAULT_CALLING_AE
from streams.scp.tcp import close_even_when_reset, tune_association_socket
from streams.scu.contexts import choose, requested_contexts, split_by_contexts
from streams.scu.outcome import (
    ABORTED,
    CONNECT,
    CONVERSION,
    DROPPED,
    NO_CONTEXT,
    NOT_SENT,
    REJECTED_PERMANENT,
    REJECTED_TRANSIENT,
    TIMEOUT,
    BatchSender,
    FailureReason,
    ItemLike,
    Progress,
    SendItem,
    SendOutcome,
    as_items,
    describe_status,
    status_kind,
)
from streams.scu.reading import Probe, ReadError, decompress, load, probe

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DicomPeer:
    """Where to send: the peer's AE title, host and port, and our own (calling) AE title;
    ``tls`` (a client :class:`ssl.SSLContext`) for DICOM over TLS (PS3.15 Annex B.1)."""

    ae_title: str
    host: str
    port: int
    calling_ae: str = DEFAULT_CALLING_AE
    tls: ssl.SSLContext | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ScuTimeouts:
    """Seconds allowed for the TCP connect, the association negotiation (ACSE), each
    C-STORE answer (DIMSE), and silence on the connection (network)."""

    connect_s: float = 10.0
    acse_s: float = 30.0
    dimse_s: float = 60.0
    network_s: float = 60.0

    @classmethod
    def uniform(cls, seconds: float) -> ScuTimeouts:
        """The same limit for every step (what ``export.destinations[].timeout_s`` sets)."""
        return cls(seconds, seconds, seconds, seconds)


class CStoreSender(BatchSender):
    """Send batches of instances to one peer; see the module docstring."""

    def __init__(self, peer: DicomPeer, *, timeouts: ScuTimeouts | None = None) -> None:
        self.peer = peer
        self.timeouts = timeouts or ScuTimeouts()

    def send_batch(
        self, items: Sequence[ItemLike], progress: Progress | None = None
    ) -> list[SendOutcome]:
        """Send ``items`` (paths, Part 10 bytes or :class:`SendItem`); one outcome each."""
        batch = as_items(list(items))
        results: list[SendOutcome | None] = [None] * len(batch)

        def report(outcome: SendOutcome) -> None:
            results[outcome.index] = outcome
            if progress is not None:
                progress(outcome)

        probes: list[Probe] = []
        for index, item in enumerate(batch):
            found = probe(index, item)
            if isinstance(found, SendOutcome):
                report(found)
            else:
                probes.append(found)
        for group in split_by_contexts(probes, key=lambda p: p.pair):
            self._association(group, report)
        done = [r for r in results if r is not None]
        assert len(done) == len(batch), "every item gets an outcome"
        return done

    # -- one association ------------------------------------------------------------------

    def _association(self, group: list[Probe], report: Progress) -> None:
        ae = _Requestor(ae_title=self.peer.calling_ae)
        ae.connection_timeout = self.timeouts.connect_s
        ae.acse_timeout = self.timeouts.acse_s
        ae.dimse_timeout = self.timeouts.dimse_s
        ae.network_timeout = self.timeouts.network_s
        for abstract, syntaxes in requested_contexts(p.pair for p in group):
            ae.add_requested_context(abstract, syntaxes)
        opened = threading.Event()
        handlers: list[Any] = [(evt.EVT_CONN_OPEN, lambda _event: opened.set())]
        tls = (self.peer.tls, self.peer.host) if self.peer.tls is not None else None
        assoc = ae.associate(
            self.peer.host,
            self.peer.port,
            ae_title=self.peer.ae_title,
            evt_handlers=handlers,
            tls_args=tls,
        )
        try:
            if not assoc.is_established:
                reason, error = self._not_established(assoc, opened.is_set())
                for entry in group:
                    report(entry.failed(reason, error))
                return
            _keep_responses(assoc)
            accepted = [
                (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                for cx in assoc.accepted_contexts
            ]
            log.debug("association with %s: %d context(s) accepted", self.peer, len(accepted))
            stopped: tuple[FailureReason, str] | None = None
            for msg_id, entry in enumerate(group, start=1):
                if stopped is not None:
                    report(entry.failed(*stopped))
                    continue
                outcome = self._store(assoc, entry, accepted, msg_id)
                report(outcome)
                if outcome.reason in (DROPPED, TIMEOUT) or not assoc.is_established:
                    stopped = (NOT_SENT, f"not sent: the association with {self.peer} ended")
            if assoc.is_established:
                assoc.release()
        finally:
            _close_socket(assoc)
            ae.shutdown()

    def _not_established(self, assoc: Any, opened: bool) -> tuple[FailureReason, str]:
        if assoc.is_rejected:
            rsp = assoc.acceptor.primitive
            permanent = int(getattr(rsp, "result", 1)) == 1
            why = str(getattr(rsp, "reason_str", "") or "no reason given")
            kind = "permanently" if permanent else "transiently"
            return (
                REJECTED_PERMANENT if permanent else REJECTED_TRANSIENT,
                f"{self.peer} rejected the association {kind}: {why}",
            )
        if not opened:
            tls = ", or the TLS handshake failed (check tls)" if self.peer.tls else ""
            return (
                CONNECT,
                f"cannot connect to {self.peer} (refused, unreachable or no answer in "
                f"{self.timeouts.connect_s:g} s{tls})",
            )
        return ABORTED, f"{self.peer} aborted the association request or did not answer it"

    def _store(
        self, assoc: Any, entry: Probe, accepted: list[tuple[str, str]], msg_id: int
    ) -> SendOutcome:
        choice = choose(entry.sop_class_uid, entry.transfer_syntax_uid, accepted)
        if choice.kind == "no_context":
            return entry.failed(NO_CONTEXT, choice.why)
        if choice.kind == "cannot_convert":
            return entry.failed(CONVERSION, choice.why)
        try:
            ds = load(entry)
            if choice.decompress:
                decompress(entry, ds)
        except ReadError as exc:
            return exc.outcome
        started = time.monotonic()
        try:
            rsp = assoc.send_c_store(ds, msg_id=(msg_id - 1) % 0xFFFF + 1)
        except (RuntimeError, OSError) as exc:  # the association ended under us
            log.debug("C-STORE of item %d to %s: %s", entry.index, self.peer, exc)
            return entry.failed(DROPPED, f"the association with {self.peer} ended")
        except (ValueError, AttributeError) as exc:  # pynetdicom could not encode it
            log.debug("C-STORE of item %d not sent: %s", entry.index, exc)
            return entry.failed(CONVERSION, f"cannot encode the data set: {type(exc).__name__}")
        converted_from = "" if choice.kind == "as_is" else entry.transfer_syntax_uid
        status = rsp.get("Status") if rsp is not None else None
        if status is None:
            waited = time.monotonic() - started
            if waited >= self.timeouts.dimse_s * 0.95:
                return entry.failed(
                    TIMEOUT, f"no C-STORE answer from {self.peer} in {self.timeouts.dimse_s:g} s"
                )
            return entry.failed(
                DROPPED, f"the association with {self.peer} ended before the answer"
            )
        code = int(status)
        kind = status_kind(code)
        return SendOutcome(
            entry.index,
            entry.item.label,
            kind,
            sop_instance_uid=entry.sop_instance_uid,
            sop_class_uid=entry.sop_class_uid,
            transfer_syntax_uid=choice.transfer_syntax_uid,
            status=code,
            error="" if kind == "sent" else f"refused by {self.peer}: {describe_status(code)}",
            converted_from=converted_from,
        )


class _Requestor(AE):
    """An AE whose association sockets are tuned and always closed.

    The socket is made before the connect, so TCP_NODELAY and the quick-ACK reads are in
    place from the A-ASSOCIATE-RQ on, and a failed connect closes it too (pynetdicom 3.0
    calls ``shutdown`` on the unconnected socket, which raises, and never ``close``).
    """

    def _create_socket(self, *args: Any, **kwargs: Any) -> Any:
        assoc_socket = super()._create_socket(*args, **kwargs)
        tune_association_socket(assoc_socket)
        close_even_when_reset(assoc_socket)
        return assoc_socket


def _keep_responses(assoc: Any) -> None:
    """Responses the reactor takes go back to the DIMSE queue (pynetdicom 3.0 race)."""
    serve = assoc._serve_request

    def serve_or_give_back(msg: Any, context_id: int) -> None:
        if msg.is_valid_request:
            serve(msg, context_id)
        else:
            assoc.dimse.msg_queue.put((context_id, msg))

    assoc._serve_request = serve_or_give_back


def _close_socket(assoc: Any) -> None:
    wrapper = getattr(assoc.dul, "socket", None)
    raw = getattr(wrapper, "socket", None)
    if raw is not None:
        raw.close()


__all__ = ["DEFAULT_CALLING_AE", "CStoreSender", "DicomPeer", "ScuTimeouts", "SendItem"]
