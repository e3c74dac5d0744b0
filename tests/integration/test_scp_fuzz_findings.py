"""Regression tests for what the SCP port fuzz (test_scp_bad_input.py) found.

Each test is named after its finding and plays the case that exposed it on purpose,
deterministically, with raw PDUs (tests/helpers/pdus.py). Each failed before its fix.

* pynetdicom's DUL reactor thread died with ``InvalidEventError`` when a response
  (P-DATA request, Evt9) was queued by the association thread after the DUL had
  aborted a malformed association (Sta13), or when the ARTIM timer, stopped after it
  had run out, still read as expired once the A-ASSOCIATE-RQ was in (Evt18 in Sta3).
  The dead reactor left the peer without an answer (streams/scp/dul.py).
* It also died inside the state machine's actions on PDUs that decode but cannot be
  made primitives: an A-ASSOCIATE-RQ with an even presentation context ID, an
  A-ABORT with an undefined source or reason.
* A connection that sent garbage (or half a PDU) before its A-ASSOCIATE-RQ and then
  went quiet held its association slot for as long as the peer kept it open: the DUL
  blocked in ``recv`` with no timeout, and the association thread, after its ACSE
  timeout, waited forever for that DUL to stop. Enough of them lock out every sender.
  And a connection closed before any A-ASSOCIATE-RQ still held its slot for the whole
  ACSE timeout (30 s by default).
* A peer that sent A-ABORT and reset its connection leaked the accepted socket until
  the garbage collector found it (pynetdicom skips ``close`` when ``shutdown`` fails).
* Malformed C-STORE-RQs handed to pynetdicom got no answer at all (no Affected SOP
  Instance UID, no Message ID: pynetdicom drops them) or a Success they did not earn
  (no data set: an empty instance stored; a Verification SOP class).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import pdus, scu
from helpers.dicom import make_ct
from helpers.scp import scp_config
from helpers.waiting import wait_for
from pydicom.uid import generate_uid
from pynetdicom.dsutils import encode

from streams.scp import ScpService

pytestmark = [pytest.mark.kafka, pytest.mark.dicom]

AE = "CT-AE"


def _connect(port: int, timeout_s: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _associated(port: int) -> socket.socket:
    sock = _connect(port)
    sock.sendall(pdus.associate_rq(AE))
    got = pdus.read_pdu(sock)
    assert got is not None and got.pdu_type == pdus.A_ASSOCIATE_AC
    return sock


def _read_until_closed(sock: socket.socket, until: int | None = None) -> list[int]:
    """PDU types the SCP sends until it closes the connection or sends ``until``.

    A read timeout (the SCP neither answers nor closes) fails the test.
    """
    types: list[int] = []
    while True:
        try:
            got = pdus.read_pdu(sock)
        except ConnectionResetError:
            return types
        if got is None:
            return types
        types.append(got.pdu_type)
        if got.pdu_type == until:
            return types


def _dul_states(scp: ScpService) -> list[str]:
    return [a.dul.state_machine.current_state for a in scp.server.associations()]


def _fsm_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    markers = ("Invalid event", "reactor failed", "Exception in DUL.run()")
    return [r.getMessage() for r in caplog.records if any(m in r.getMessage() for m in markers)]


ECHO_RQ = pdus.command_set(
    {
        0x0002: pdus.ui(pdus.VERIFICATION),
        0x0100: pdus.us(0x0030),
        0x0110: pdus.us(1),
        0x0800: pdus.us(0x0101),
    }
)


async def test_response_queued_after_abort_of_malformed_association_never_reaches_dul_in_sta13(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A C-ECHO (pynetdicom's association thread answers it), an invalid PDU, then more.

    The invalid PDU makes the DUL abort (AA-8, Sta13) while the association thread is
    still answering the request; the PDUs behind it keep the DUL in Sta13 (it reads and
    ignores them) long enough for the answer to be queued there. Before the fix the DUL
    thread died on ``Invalid event 'Evt9' for the current state 'Sta13'`` and never
    closed the connection.
    """
    caplog.set_level(logging.INFO)
    config = scp_config(tmp_path / "storage", kafka_bootstrap, unique_name("scp"))
    async with ScpService(config) as scp:
        for _ in range(5):
            sock = await asyncio.to_thread(_associated, scp.port)
            with sock:
                trailer = pdus.pdu(pdus.A_RELEASE_RQ, bytes(4)) * 3000
                echo = pdus.p_data(pdus.pdv(1, 0x03, ECHO_RQ))
                sock.sendall(echo + pdus.pdu(0x55, b"") + trailer)
                types = await asyncio.to_thread(_read_until_closed, sock)
            assert pdus.A_ABORT in types  # the abort for the invalid PDU, then a close
            await asyncio.to_thread(
                wait_for, lambda: not scp.server.associations(), "the association to end"
            )
        assert _fsm_errors(caplog) == []
        result, status = await asyncio.to_thread(scu.echo, scp.port, aec=AE)
        assert result.established and status == 0


async def test_associate_rq_completed_after_artim_expiry_never_crashes_the_dul_in_sta3(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An A-ASSOCIATE-RQ whose last bytes arrive after the ARTIM timer ran out.

    The DUL reads the whole PDU before it looks at its timers again, then stops ARTIM
    (AE-6). pynetdicom's timer, stopped after its deadline, keeps reporting expired, so
    the next loop raised Evt18 in Sta3 and killed the DUL thread: the peer got no
    answer and the socket was left open. Now the association is negotiated normally.
    """
    caplog.set_level(logging.INFO)
    config = scp_config(tmp_path / "storage", kafka_bootstrap, unique_name("scp"), acse_timeout_s=1)
    async with ScpService(config) as scp:
        rq = pdus.associate_rq(AE)
        sock = await asyncio.to_thread(_connect, scp.port)
        with sock:
            # Readiness: the DUL has taken the connection (Sta2, ARTIM running).
            await asyncio.to_thread(wait_for, lambda: _dul_states(scp) == ["Sta2"], "Sta2")
            # A slow peer: the PDU comes in three parts, 0.6 s apart (each read waits
            # less than the 1 s timeout), so its end arrives after the ARTIM deadline.
            for part in (rq[:20], rq[20:60]):
                sock.sendall(part)
                await asyncio.sleep(0.6)
            sock.sendall(rq[60:])
            answers = await asyncio.to_thread(_read_until_closed, sock, pdus.A_ASSOCIATE_AC)
        # Accepted, or aborted because the association thread stopped waiting for the
        # request at the ACSE timeout; never left without an answer.
        assert answers in ([pdus.A_ASSOCIATE_AC], [pdus.A_ABORT]), answers
        await asyncio.to_thread(wait_for, lambda: not scp.server.associations(), "idle SCP")
        assert _fsm_errors(caplog) == []
        result, status = await asyncio.to_thread(scu.echo, scp.port, aec=AE)
        assert result.established and status == 0


GARBAGE_THEN_QUIET = {
    "unknown-pdu-type": b"\xff" * 20,  # three invalid 6-byte headers, then 2 bytes
    "half-a-header": b"\x01\x00\x00",
    "associate-rq-header-only": struct.pack(">BxL", pdus.A_ASSOCIATE_RQ, 1000),
}


@pytest.mark.parametrize("garbage", GARBAGE_THEN_QUIET.values(), ids=GARBAGE_THEN_QUIET.keys())
async def test_garbage_before_associate_rq_frees_its_slot_after_acse_timeout(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    garbage: bytes,
) -> None:
    """Every slot taken by peers that sent garbage and stay connected, silent.

    Real senders are refused (local limit) at first; once ``scp.acse_timeout_s`` has
    passed the SCP closes those connections and accepts real senders again, while the
    garbage peers are still connected. Before the fix the slots stayed taken for as
    long as the peers kept their connections open.
    """
    config = scp_config(
        tmp_path / "storage",
        kafka_bootstrap,
        unique_name("scp"),
        max_associations=3,
        acse_timeout_s=1,
    )
    async with ScpService(config) as scp:
        hogs = [await asyncio.to_thread(_connect, scp.port, 30.0) for _ in range(3)]
        try:
            for hog in hogs:
                hog.sendall(garbage)
            await asyncio.to_thread(
                wait_for, lambda: len(scp.server.associations()) == 3, "3 slots taken"
            )
            started = time.monotonic()
            result, _ = await asyncio.to_thread(scu.echo, scp.port, aec=AE)
            refused_at_first = result.rejected
            await asyncio.to_thread(
                wait_for,
                lambda: scu.echo(scp.port, aec=AE)[0].established,
                "the SCP to accept a real sender again",
                20.0,
            )
            waited = time.monotonic() - started
            # The SCP closed the silent peers' connections (they did not close them).
            for hog in hogs:
                answers = await asyncio.to_thread(_read_until_closed, hog)
                assert set(answers) <= {pdus.A_ABORT}
        finally:
            for hog in hogs:
                hog.close()
    assert refused_at_first and waited < 10, (refused_at_first, waited)


async def test_connection_closed_before_associate_rq_frees_its_slot_at_once(
    tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    """Garbage, then the peer closes: the slot is free long before the ACSE timeout."""
    config = scp_config(
        tmp_path / "storage",
        kafka_bootstrap,
        unique_name("scp"),
        max_associations=3,
        acse_timeout_s=60,
    )
    async with ScpService(config) as scp:
        for _ in range(6):
            sock = await asyncio.to_thread(_connect, scp.port)
            with sock:
                sock.sendall(b"\xff" * 12)
        took = await asyncio.to_thread(
            wait_for, lambda: not scp.server.associations(), "the slots to be freed", 30.0
        )
        assert took < 10

        # pynetdicom counts an association until its thread has ended, a moment after
        # it left the list above: poll for a C-ECHO rather than take the first answer.
        def echo_accepted() -> bool:
            result, status = scu.echo(scp.port, aec=AE)
            return result.established and status == 0

        await asyncio.to_thread(wait_for, echo_accepted, "a C-ECHO to be accepted", 10.0)


def _associate_rq_with_context_id(context_id: int) -> bytes:
    contexts = (
        (1, pdus.VERIFICATION, (pdus.EXPLICIT_LE,)),
        (context_id, pdus.CT_IMAGE, (pdus.EXPLICIT_LE,)),
    )
    return pdus.associate_rq(AE, contexts=contexts)


INVALID_PRIMITIVES = {
    # A-ASSOCIATE-RQ proposing presentation context ID 2 (IDs are odd, PS3.8 §9.3.2.2):
    # it decodes, but AE-6 raised turning it into a primitive.
    "even-context-id": (_associate_rq_with_context_id(2), b""),
    # A-ABORT with source 3 (undefined, PS3.8 §9.3.8): AA-3 raised.
    "abort-source-3": (pdus.associate_rq(AE), pdus.pdu(pdus.A_ABORT, bytes([0, 0, 3, 0]))),
    # A-ABORT from the service provider with reason 9 (undefined).
    "abort-reason-9": (pdus.associate_rq(AE), pdus.pdu(pdus.A_ABORT, bytes([0, 0, 2, 9]))),
}


@pytest.mark.parametrize("name", INVALID_PRIMITIVES)
async def test_pdu_that_decodes_but_is_not_a_valid_primitive_is_aborted_not_a_dead_dul(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
    name: str,
) -> None:
    """Fuzz finding: these PDUs killed the DUL thread inside the state machine's action.

    The peer got no answer and its connection stayed open until it gave up. Now they
    are invalid PDUs (Evt19): the SCP answers A-ABORT and closes the connection.
    """
    caplog.set_level(logging.INFO)
    first, then = INVALID_PRIMITIVES[name]
    config = scp_config(tmp_path / "storage", kafka_bootstrap, unique_name("scp"))
    async with ScpService(config) as scp:
        sock = await asyncio.to_thread(_connect, scp.port)
        with sock:
            sock.sendall(first)
            if then:
                got = await asyncio.to_thread(pdus.read_pdu, sock)
                assert got is not None and got.pdu_type == pdus.A_ASSOCIATE_AC
                sock.sendall(then)
            answers = await asyncio.to_thread(_read_until_closed, sock)
        assert answers == [pdus.A_ABORT], (name, answers)
        await asyncio.to_thread(wait_for, lambda: not scp.server.associations(), "idle SCP")
        assert _fsm_errors(caplog) == []
        result, status = await asyncio.to_thread(scu.echo, scp.port, aec=AE)
        assert result.established and status == 0


async def test_connection_reset_after_a_abort_closes_its_socket(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fuzz finding: a peer that sends A-ABORT and resets leaked the accepted socket.

    pynetdicom shuts the socket down and closes it in one ``try``; on a reset
    connection ``shutdown`` fails and ``close`` never ran, so each such connection kept
    its descriptor until the garbage collector found it (a ResourceWarning).
    """
    unraisable: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(repr(u.exc_value)))
    config = scp_config(tmp_path / "storage", kafka_bootstrap, unique_name("scp"))
    async with ScpService(config) as scp:

        def abort_and_reset() -> None:
            sock = _associated(scp.port)
            sock.sendall(pdus.pdu(pdus.A_ABORT, bytes(4)))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

        for _ in range(20):
            await asyncio.to_thread(abort_and_reset)
        await asyncio.to_thread(wait_for, lambda: not scp.server.associations(), "idle SCP")
        gc.collect()
        result, status = await asyncio.to_thread(scu.echo, scp.port, aec=AE)
        assert result.established and status == 0
    gc.collect()
    leaked = [u for u in unraisable if "unclosed <socket" in u]
    assert leaked == [], f"{len(leaked)} sockets never closed: {leaked[:2]}"


def _ct_bytes(sop: str) -> bytes:
    raw = encode(make_ct(sop_uid=sop), False, True)
    assert raw is not None
    return bytes(raw)


#: C-STORE-RQs the fast path used to hand to pynetdicom, and the answer now. pynetdicom
#: dropped the ones without an Affected SOP Instance UID or a Message ID unanswered
#: (its ``is_valid_request``), stored an empty instance and answered Success for one
#: announcing no data set, and answered Success, storing nothing, for one naming the
#: Verification SOP class. (One without Priority was and is stored: Priority changes
#: nothing here.)
MALFORMED_STORES: dict[str, tuple[int | None, dict[int, bytes], bool, int | None]] = {
    # name: (element dropped, elements replaced, data set sent, expected status or abort)
    "no-sop-instance-uid": (0x1000, {}, True, 0x0117),
    "no-priority": (0x0700, {}, True, 0x0000),
    "no-data-set": (None, {0x0800: pdus.us(0x0101)}, False, 0xC000),
    "verification-sop-class": (None, {0x0002: pdus.ui(pdus.VERIFICATION)}, True, 0x0122),
    "no-message-id": (0x0110, {}, True, None),
}


@pytest.mark.parametrize("name", MALFORMED_STORES)
async def test_malformed_c_store_rq_gets_a_failure_status_not_silence_or_success(
    tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[[str], str], name: str
) -> None:
    """Fuzz finding: these C-STORE-RQs got no answer (the sender waited for its DIMSE
    timeout) or a Success they did not earn. The fast path now answers every C-STORE-RQ
    on an accepted context itself; one it cannot answer (no Message ID) is aborted.
    """
    drop, replace, with_data, expected = MALFORMED_STORES[name]
    sop = generate_uid()
    elements = pdus.c_store_elements(pdus.CT_IMAGE, sop, 5) | replace
    if drop is not None:
        del elements[drop]
    command = pdus.command_set(elements)
    storage = tmp_path / "storage"
    config = scp_config(storage, kafka_bootstrap, unique_name("scp"))
    async with ScpService(config) as scp:
        sock = await asyncio.to_thread(_associated, scp.port)
        with sock:
            items = [pdus.pdv(3, 0x03, command)]
            if with_data:
                items.append(pdus.pdv(3, 0x02, _ct_bytes(sop)))
            sock.sendall(pdus.p_data(*items))
            got = await asyncio.to_thread(pdus.read_pdu, sock)  # a timeout fails the test
            assert got is not None
            if expected is None:
                assert got.pdu_type == pdus.A_ABORT
            else:
                assert got.pdu_type == pdus.P_DATA_TF
                assert pdus.command_status(got.body) == (expected, sop if drop != 0x1000 else "")
                sock.sendall(pdus.pdu(pdus.A_RELEASE_RQ, bytes(4)))
                assert await asyncio.to_thread(_read_until_closed, sock) == [pdus.A_RELEASE_RP]
        await asyncio.to_thread(wait_for, lambda: not scp.server.associations(), "idle SCP")
        stored = [p for p in storage.rglob("*.dcm") if ".outbox" not in p.parts]
        assert len(stored) == (1 if expected == 0 else 0)
        result, status = await asyncio.to_thread(scu.echo, scp.port, aec=AE)
        assert result.established and status == 0
