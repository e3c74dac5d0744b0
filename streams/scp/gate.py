"""Association admission: socket tuning on connect, accept or reject on request.

pynetdicom's ``require_called_aet`` compares with one AE title only, and its calling-AE
list ignores the peer's host, so :class:`AssociationGate` checks the
:class:`~streams.scp.policy.AssociationPolicy` in an ``EVT_REQUESTED`` handler and
refuses with the proper A-ASSOCIATE-RJ (PS3.8 §9.3.4) exactly as pynetdicom's own
check does: ``acse.send_reject`` then ``assoc.kill()`` (which waits until the reject
has been sent and the connection closed). The ``max_associations`` limit is left to
pynetdicom (rejected-transient, "local limit exceeded").
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streams.scp.negotiation import prefer_proposed_order
from streams.scp.policy import AssociationPolicy, Rejection
from streams.scp.tcp import tune_association_socket
from streams.tls import peer_subject

log = logging.getLogger(__name__)

#: Refusal when the gate itself fails: transient, service-user, no reason given.
GATE_FAILURE = Rejection(0x02, 0x01, 0x01, "internal error while checking the association")


@dataclass(frozen=True, slots=True)
class AssociationInfo:
    """Who is on the other end of an accepted association."""

    association_id: str
    called_ae: str
    calling_ae: str
    calling_host: str
    #: RFC 4514 subject of the peer's verified TLS certificate ("" without one).
    peer_certificate_subject: str = ""


class AssociationGate:
    """``EVT_CONN_OPEN`` and ``EVT_REQUESTED`` handlers plus the accepted associations.

    ``id_factory`` makes association ids (a uuid4 string by default).
    """

    def __init__(
        self,
        policy: AssociationPolicy,
        *,
        quickack: bool = True,
        id_factory: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.policy = policy
        self._quickack = quickack
        self._ids = id_factory
        self._lock = threading.Lock()
        self._infos: weakref.WeakKeyDictionary[Any, AssociationInfo] = weakref.WeakKeyDictionary()

    def on_conn_open(self, event: Any) -> None:
        """TCP_NODELAY and quick-ACK reads on the accepted connection."""
        tune_association_socket(event.assoc.dul.socket, quickack=self._quickack)

    def on_requested(self, event: Any) -> None:
        """Accept (record who called) or reject the A-ASSOCIATE-RQ."""
        assoc = event.assoc
        try:
            rq = assoc.requestor.primitive
            called = str(rq.called_ae_title).strip()
            calling = str(rq.calling_ae_title).strip()
            host = str(assoc.requestor.address)
            rejection = self.policy.check(called, calling, host)
        except Exception as exc:
            log.error("association check failed (%s); rejecting", type(exc).__name__)
            log.debug("association check failure", exc_info=True)
            self._reject(assoc, GATE_FAILURE)
            return
        if rejection is not None:
            log.info(
                "association %s@%s -> %s rejected: %s", calling, host, called, rejection.reason
            )
            self._reject(assoc, rejection)
            return
        info = AssociationInfo(
            association_id=self._ids(),
            called_ae=called,
            calling_ae=calling,
            calling_host=host,
            peer_certificate_subject=peer_subject(_raw_socket(assoc)),
        )
        with self._lock:
            self._infos[assoc] = info
        prefer_proposed_order(assoc)
        log.debug(
            "association %s requested by %s@%s -> %s",
            info.association_id, calling, host, called,
            extra={"association_id": info.association_id},
        )  # fmt: skip

    def info(self, assoc: Any) -> AssociationInfo:
        """The :class:`AssociationInfo` recorded when ``assoc`` was admitted."""
        with self._lock:
            return self._infos[assoc]

    @staticmethod
    def _reject(assoc: Any, rejection: Rejection) -> None:
        assoc.acse.send_reject(rejection.result, rejection.source, rejection.diagnostic)
        assoc.kill()


def _raw_socket(assoc: Any) -> Any:
    """The OS socket (an ``ssl.SSLSocket`` on a TLS listener) of an association."""
    return getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)
