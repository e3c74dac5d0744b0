"""A storage SCU made of raw PDUs (tests/helpers/pdus.py) for what no real sender sends.

pynetdicom refuses to send an empty or over-long SOP Instance UID, and a data set that
pydicom cannot read or write cannot go through ``send_c_store`` at all; DCMTK refuses
files without meta information. This sender puts any command UID and any bytes in a
C-STORE-RQ, so the SCP's answer to them can be tested.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from helpers import pdus

#: Largest PDV fragment this sender puts in one P-DATA-TF PDU.
FRAGMENT = 16_000


@dataclass(frozen=True)
class RawStore:
    """One C-STORE-RQ: the command's SOP class and instance UID, the data set bytes."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    data: bytes


@dataclass
class RawResult:
    """What came back: the association answer, one status per request, how it ended.

    ``statuses`` holds ``None`` for a request not sent (its context was not accepted,
    or the association ended before it) or not answered.
    """

    associated: bool
    statuses: list[int | None] = field(default_factory=list)
    ended: str = ""
    rejected_contexts: set[tuple[str, str]] = field(default_factory=set)


def _accepted_contexts(body: bytes) -> set[int]:
    """Presentation context IDs an A-ASSOCIATE-AC body accepts (PS3.8 §9.3.3.2)."""
    accepted: set[int] = set()
    pos = 68  # protocol version, reserved, AE titles, reserved
    while pos + 4 <= len(body):
        item_type, length = struct.unpack_from(">BxH", body, pos)
        if item_type == 0x21 and length >= 4:
            cid, result = body[pos + 4], body[pos + 6]
            if result == 0:
                accepted.add(cid)
        pos += 4 + length
    return accepted


def _command(req: RawStore, message_id: int) -> bytes:
    return pdus.command_set(
        pdus.c_store_elements(req.sop_class_uid, req.sop_instance_uid, message_id)
    )


def _send_store(sock: socket.socket, cid: int, command: bytes, data: bytes) -> None:
    sock.sendall(pdus.p_data(pdus.pdv(cid, 0x03, command)))
    chunks = [data[i : i + FRAGMENT] for i in range(0, len(data), FRAGMENT)] or [b""]
    for i, chunk in enumerate(chunks):
        last = 0x02 if i == len(chunks) - 1 else 0x00
        sock.sendall(pdus.p_data(pdus.pdv(cid, last, chunk)))


def _response(sock: socket.socket, result: RawResult) -> int | None:
    """The status of the next C-STORE-RSP; ``None`` (and ``ended`` set) if none came."""
    got = pdus.read_pdu(sock)
    if got is None:
        result.ended = "closed"
        return None
    if got.pdu_type == pdus.A_ABORT:
        result.ended = "aborted"
        return None
    status = pdus.command_status(got.body) if got.pdu_type == pdus.P_DATA_TF else None
    return None if status is None else status[0]


def store(
    port: int, requests: Sequence[RawStore], *, aec: str, timeout_s: float = 30.0
) -> RawResult:
    """Send ``requests`` on one association (one context per abstract/transfer syntax)."""
    pairs = list(dict.fromkeys((r.sop_class_uid, r.transfer_syntax_uid) for r in requests))
    ids = {pair: 1 + 2 * i for i, pair in enumerate(pairs)}
    contexts = tuple((ids[p], p[0], (p[1],)) for p in pairs)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(pdus.associate_rq(aec, contexts=contexts, max_pdu=0))
        got = pdus.read_pdu(sock)
        if got is None or got.pdu_type != pdus.A_ASSOCIATE_AC:
            return RawResult(associated=False, ended="rejected")
        accepted = _accepted_contexts(got.body)
        result = RawResult(associated=True)
        result.rejected_contexts = {p for p, cid in ids.items() if cid not in accepted}
        for message_id, req in enumerate(requests, 1):
            cid = ids[(req.sop_class_uid, req.transfer_syntax_uid)]
            if result.ended or cid not in accepted:
                result.statuses.append(None)
                continue
            _send_store(sock, cid, _command(req, message_id), req.data)
            result.statuses.append(_response(sock, result))
        if not result.ended:
            sock.sendall(pdus.pdu(pdus.A_RELEASE_RQ, bytes(4)))
            got = pdus.read_pdu(sock)
            result.ended = "released" if got and got.pdu_type == pdus.A_RELEASE_RP else "other"
    return result
