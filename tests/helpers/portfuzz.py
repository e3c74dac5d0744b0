"""One seeded case of the SCP port fuzz (tests/integration/test_scp_bad_input.py).

:class:`Case` builds a C-STORE stream from its seed, mutates it one of 15 ways (random
bytes, malformed PDUs and PDVs, command-set mutations, bad contexts and control
headers, byte flips, abrupt disconnects...) and plays it against the SCP's port,
reporting what came back as an :class:`Outcome`.
"""

from __future__ import annotations

import random
import socket
import struct
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.dsutils import encode

from helpers import pdus
from helpers.dicom import make_ct

AE = "CT-AE"


@dataclass
class Outcome:
    """What the SCP did with one case, as seen from the wire."""

    kind: str
    successes: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    ended: str = ""
    detail: str = ""


def _dataset_bytes(ds: Dataset, implicit: bool) -> bytes:
    raw = encode(ds, implicit, True)
    assert raw is not None
    return bytes(raw)


class Case:
    """Build and play one seeded case against ``port``."""

    def __init__(self, port: int, seed: int) -> None:
        self.port = port
        self.rng = random.Random(seed)

    # -- wire helpers

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _associate(self, sock: socket.socket) -> bool:
        sock.sendall(pdus.associate_rq(AE))
        got = pdus.read_pdu(sock)
        return got is not None and got.pdu_type == pdus.A_ASSOCIATE_AC

    def _finish(self, sock: socket.socket, out: Outcome) -> None:
        """Ask for a release and read until the SCP releases, aborts or closes."""
        try:
            sock.sendall(pdus.pdu(pdus.A_RELEASE_RQ, bytes(4)))
        except OSError:
            out.ended = "closed"
            return
        while True:
            try:
                got = pdus.read_pdu(sock)
            except OSError:
                out.ended = "reset"
                return
            if got is None:
                out.ended = "closed"
                return
            if got.pdu_type == pdus.P_DATA_TF:
                status = pdus.command_status(got.body)
                if status is not None:
                    out.statuses.append(status[0])
                    if status[0] == 0x0000:
                        out.successes.append(status[1])
                continue
            out.ended = {pdus.A_RELEASE_RP: "released", pdus.A_ABORT: "aborted"}.get(
                got.pdu_type, f"pdu-{got.pdu_type:#x}"
            )
            return

    # -- the C-STORE the mutations start from

    def _store_parts(self) -> tuple[int, str, bytes, bytes]:
        implicit = self.rng.random() < 0.3
        cid = 5 if implicit else 3
        sop = generate_uid()
        ds = make_ct(sop_uid=sop, rows=self.rng.choice((2, 8, 64)), cols=8)
        command = pdus.command_set(
            pdus.c_store_elements(pdus.CT_IMAGE, sop, self.rng.randrange(1, 0xFFFF))
        )
        return cid, sop, command, _dataset_bytes(ds, implicit)

    def _fragments(self, data: bytes) -> list[bytes]:
        if not data:
            return [b""]
        cuts = sorted(self.rng.sample(range(1, len(data) + 1), min(3, len(data))))
        out, start = [], 0
        for cut in cuts:
            out.append(data[start:cut])
            start = cut
        return [f for f in out if f] or [data]

    def _store_pdus(self, cid: int, command: bytes, data: bytes) -> list[bytes]:
        items = [pdus.pdv(cid, 0x03, command)]
        frags = self._fragments(data)
        items += [
            pdus.pdv(cid, 0x02 if i == len(frags) - 1 else 0x00, f) for i, f in enumerate(frags)
        ]
        if self.rng.random() < 0.5:
            return [pdus.p_data(*items)]
        return [pdus.p_data(item) for item in items]

    # -- mutations

    def play(self) -> Outcome:
        kind = self.rng.choice(
            (
                "random_bytes",
                "random_after_assoc",
                "random_pdu_type",
                "valid_store",
                "truncated_pdu",
                "length_beyond_data",
                "huge_length",
                "bad_pdv_length",
                "command_mutation",
                "bad_context",
                "bad_control",
                "dataset_first",
                "abort_mid_dataset",
                "byte_flips",
                "bad_associate_rq",
            )
        )
        out = Outcome(kind)
        sock = self._connect()
        try:
            getattr(self, f"_case_{kind}")(sock, out)
        except OSError:
            out.ended = out.ended or "reset"
        finally:
            sock.close()
        return out

    def _case_random_bytes(self, sock: socket.socket, out: Outcome) -> None:
        sock.sendall(self.rng.randbytes(self.rng.randrange(1, 600)))
        out.ended = "closed-by-us"

    def _case_bad_associate_rq(self, sock: socket.socket, out: Outcome) -> None:
        rq = bytearray(pdus.associate_rq(AE))
        for _ in range(self.rng.randrange(1, 6)):
            rq[self.rng.randrange(len(rq))] = self.rng.randrange(256)
        if self.rng.random() < 0.3:
            rq = rq[: self.rng.randrange(1, len(rq))]
        sock.sendall(rq)
        if self.rng.random() < 0.5:
            sock.shutdown(socket.SHUT_WR)
            while pdus.read_pdu(sock) is not None:
                pass
        out.ended = "closed-by-us"

    def _established(self, sock: socket.socket, out: Outcome) -> bool:
        if self._associate(sock):
            return True
        out.ended = "not-associated"
        return False

    def _case_random_after_assoc(self, sock: socket.socket, out: Outcome) -> None:
        if self._established(sock, out):
            sock.sendall(self.rng.randbytes(self.rng.randrange(1, 600)))
            self._finish(sock, out)

    def _case_random_pdu_type(self, sock: socket.socket, out: Outcome) -> None:
        if self._established(sock, out):
            ptype = self.rng.choice((0x00, 0x01, 0x02, 0x03, 0x06, 0x08, 0x55, 0xFF))
            sock.sendall(pdus.pdu(ptype, self.rng.randbytes(self.rng.randrange(0, 100))))
            self._finish(sock, out)

    def _case_valid_store(self, sock: socket.socket, out: Outcome) -> None:
        if self._established(sock, out):
            cid, _sop, command, data = self._store_parts()
            for p in self._store_pdus(cid, command, data):
                sock.sendall(p)
            self._finish(sock, out)

    def _stream(self, sock: socket.socket) -> bytes:
        cid, _sop, command, data = self._store_parts()
        return b"".join(self._store_pdus(cid, command, data))

    def _case_truncated_pdu(self, sock: socket.socket, out: Outcome) -> None:
        """Abrupt disconnect at a random byte of a C-STORE (header, command or data)."""
        if self._established(sock, out):
            stream = self._stream(sock)
            sock.sendall(stream[: self.rng.randrange(1, len(stream))])
            if self.rng.random() < 0.3:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            out.ended = "closed-by-us"

    def _case_length_beyond_data(self, sock: socket.socket, out: Outcome) -> None:
        """A P-DATA-TF whose length field promises more than is sent, then a close."""
        if self._established(sock, out):
            cid, _sop, command, data = self._store_parts()
            body = pdus.pdv(cid, 0x03, command) + pdus.pdv(cid, 0x02, data)
            extra = self.rng.choice((1, 2, 100, 65536, 10_000_000))
            sock.sendall(pdus.p_data(body, length=len(body) + extra))
            out.ended = "closed-by-us"

    def _case_huge_length(self, sock: socket.socket, out: Outcome) -> None:
        """A PDU header announcing up to 4 GiB, with little or nothing behind it."""
        associated = self.rng.random() < 0.7
        if associated and not self._established(sock, out):
            return
        ptype = self.rng.choice((0x01, 0x04, 0x04, 0x05, 0x07))
        length = self.rng.choice((0xFFFFFFFF, 0x7FFFFFFF, 0x40000000, 0x10000000))
        sock.sendall(pdus.pdu(ptype, self.rng.randbytes(self.rng.randrange(0, 64)), length=length))
        out.ended = "closed-by-us"

    def _case_bad_pdv_length(self, sock: socket.socket, out: Outcome) -> None:
        if self._established(sock, out):
            cid, _sop, command, data = self._store_parts()
            bad = self.rng.choice((0, 1, len(command) + 3, len(command) + 2 + 10**6, 0xFFFFFFFF))
            items = [pdus.pdv(cid, 0x03, command, length=bad), pdus.pdv(cid, 0x02, data)]
            sock.sendall(pdus.p_data(*items))
            self._finish(sock, out)

    def _case_command_mutation(self, sock: socket.socket, out: Outcome) -> None:
        """Wrong element lengths, missing UIDs/fields, wrong command field, bad group length."""
        if not self._established(sock, out):
            return
        cid, sop, _command, data = self._store_parts()
        elements = pdus.c_store_elements(pdus.CT_IMAGE, sop, 7)
        how = self.rng.choice(
            ("drop", "drop", "empty", "odd_us", "field", "dataset_type", "glen", "elem_len")
        )
        out.detail = how
        if how in ("drop", "empty"):
            key = self.rng.choice((0x0002, 0x0100, 0x0110, 0x0700, 0x0800, 0x1000))
            out.detail = f"{how} {key:04x}"
            if how == "drop":
                del elements[key]
            else:
                elements[key] = b""
        elif how == "odd_us":
            elements[self.rng.choice((0x0100, 0x0110, 0x0700, 0x0800))] = b"\x01\x00\x00"
        elif how == "field":
            elements[0x0100] = pdus.us(self.rng.choice((0x0000, 0x0020, 0x8001, 0x0FFF, 0xFFFF)))
        elif how == "dataset_type":
            elements[0x0800] = pdus.us(0x0101)
        command = pdus.command_set(
            elements, group_length=self.rng.randrange(0, 400) if how == "glen" else None
        )
        if how == "elem_len":
            pos = self.rng.randrange(0, max(1, len(command) - 8), 2)
            command = (
                command[: pos + 4]
                + struct.pack("<L", self.rng.randrange(0, 2**32))
                + command[pos + 8 :]
            )
        for p in self._store_pdus(cid, command, data):
            sock.sendall(p)
        self._finish(sock, out)

    def _case_bad_context(self, sock: socket.socket, out: Outcome) -> None:
        """Unknown, unaccepted or changing presentation context ids."""
        if not self._established(sock, out):
            return
        cid, _sop, command, data = self._store_parts()
        bogus = self.rng.choice((0, 2, 7, 99, 255))
        how = self.rng.choice(("all", "data", "command"))
        items = [
            pdus.pdv(cid if how == "data" else bogus, 0x03, command),
            pdus.pdv(cid if how == "command" else bogus, 0x02, data),
        ]
        if how == "command":
            items[0] = pdus.pdv(1, 0x03, command)  # Verification context, CT data set
        sock.sendall(pdus.p_data(*items))
        self._finish(sock, out)

    def _case_bad_control(self, sock: socket.socket, out: Outcome) -> None:
        """Message control headers with reserved bits, or command/last bits swapped."""
        if not self._established(sock, out):
            return
        cid, _sop, command, data = self._store_parts()
        controls = [0x03, 0x02]
        i = self.rng.randrange(2)
        controls[i] = self.rng.choice((0x00, 0x01, 0x02, 0x03, 0x04, 0xFC, 0xFF))
        extra = (
            [pdus.pdv(cid, self.rng.randrange(256), self.rng.randbytes(8))]
            if self.rng.random() < 0.3
            else []
        )
        sock.sendall(
            pdus.p_data(
                pdus.pdv(cid, controls[0], command), pdus.pdv(cid, controls[1], data), *extra
            )
        )
        self._finish(sock, out)

    def _case_dataset_first(self, sock: socket.socket, out: Outcome) -> None:
        """Data set fragments before (or without) the command set."""
        if not self._established(sock, out):
            return
        cid, _sop, command, data = self._store_parts()
        items = [
            pdus.pdv(cid, 0x00, data[: len(data) // 2]),
            pdus.pdv(cid, 0x02, data[len(data) // 2 :]),
        ]
        if self.rng.random() < 0.5:
            items.append(pdus.pdv(cid, 0x03, command))
        sock.sendall(pdus.p_data(*items))
        self._finish(sock, out)

    def _case_abort_mid_dataset(self, sock: socket.socket, out: Outcome) -> None:
        """Command complete, some data fragments, then A-ABORT or a plain close."""
        if not self._established(sock, out):
            return
        cid, _sop, command, data = self._store_parts()
        sock.sendall(pdus.p_data(pdus.pdv(cid, 0x03, command)))
        sock.sendall(pdus.p_data(pdus.pdv(cid, 0x00, data[: max(1, len(data) // 3)])))
        if self.rng.random() < 0.5:
            sock.sendall(pdus.pdu(pdus.A_ABORT, bytes(4)))
        out.ended = "closed-by-us"

    def _case_byte_flips(self, sock: socket.socket, out: Outcome) -> None:
        """A valid C-STORE stream with a few random bytes changed."""
        if not self._established(sock, out):
            return
        stream = bytearray(self._stream(sock))
        for _ in range(self.rng.randrange(1, 4)):
            stream[self.rng.randrange(len(stream))] = self.rng.randrange(256)
        sock.sendall(stream)
        self._finish(sock, out)
