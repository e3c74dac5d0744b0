"""recv_exact: the quick-ACK reader of accepted DICOM sockets (streams.scp.tcp)."""

from __future__ import annotations

import socket
import threading
import tracemalloc

from streams.scp.tcp import PREALLOCATE_MAX, recv_exact


def test_reads_exactly_what_was_asked_across_growth() -> None:
    a, b = socket.socketpair()
    with a, b:
        payload = bytes(range(256)) * ((PREALLOCATE_MAX * 3) // 256 + 1)
        writer = threading.Thread(target=b.sendall, args=(payload,))
        writer.start()
        got = recv_exact(a, len(payload), quickack=False)
        writer.join()
        assert bytes(got) == payload


def test_a_pdu_length_of_4_gib_allocates_only_what_arrives() -> None:
    """Fuzz finding: a PDU header announcing 0xFFFFFFFF bytes made the SCP zero-fill 4 GiB."""
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"x" * 100)
        b.shutdown(socket.SHUT_WR)
        tracemalloc.start()
        try:
            got = recv_exact(a, 0xFFFFFFFF, quickack=False)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert bytes(got) == b"x" * 100
    assert peak < 4 * PREALLOCATE_MAX
