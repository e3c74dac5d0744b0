"""TCP tuning of accepted DICOM connections (DESIGN.md §4, "DICOM over TCP stalls").

DCMTK writes a PDU header and body in two writes and leaves Nagle on unless told
otherwise, so every message waits on a 40 ms delayed ACK; pynetdicom never sets
TCP_NODELAY. Measured on loopback (reference dicom-ingest-baselines.md §2): a stock
``storescu`` went from 21 to 246 small instances/s once the receiver set TCP_NODELAY
*and* re-armed TCP_QUICKACK before every read (Linux clears quick-ack mode by itself).

:func:`tune_association_socket` is called from an ``EVT_CONN_OPEN`` handler; it touches
only the one connection: it sets TCP_NODELAY and gives that connection's pynetdicom
``AssociationSocket`` a ``recv`` that re-arms TCP_QUICKACK and reads straight into one
buffer (pynetdicom's own reads 4 KiB at a time).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from typing import Any

log = logging.getLogger(__name__)

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


#: Most bytes :func:`recv_exact` allocates ahead of data actually received: a PDU
#: length field is the peer's claim (up to 4 GiB), not data.
PREALLOCATE_MAX = 1 << 20


def recv_exact(sock: socket.socket, nr_bytes: int, *, quickack: bool) -> bytearray:
    """Read ``nr_bytes`` (fewer only if the peer closes), re-arming quick ACKs per read.

    Same contract as ``AssociationSocket.recv``: returns what arrived before the
    connection closed; socket errors propagate to pynetdicom's DUL, which handles them.
    The buffer grows with the data received (at most doubling), so a bogus length field
    costs no memory the peer has not sent.
    """
    buf = bytearray(min(nr_bytes, PREALLOCATE_MAX))
    got = 0
    while got < nr_bytes:
        if got == len(buf):
            buf.extend(bytes(min(nr_bytes - got, len(buf))))
        if quickack and _QUICKACK is not None:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        with memoryview(buf) as view:
            n = sock.recv_into(view[got:], len(buf) - got)
        if n == 0:
            del buf[got:]
            return buf
        got += n
    return buf


def close_even_when_reset(assoc_socket: Any) -> None:
    """Make a pynetdicom ``AssociationSocket`` close its OS socket whatever happens.

    pynetdicom's ``AssociationSocket._shutdown_socket`` calls ``shutdown`` and then
    ``close`` in one ``try`` block: on a connection the peer has reset, ``shutdown``
    raises ENOTCONN, ``close`` is skipped, and the descriptor stays open until the
    garbage collector finds the socket (with a ResourceWarning), one per connection
    that sent an A-ABORT and reset, say (found by the port fuzz, issue 8).
    """

    def shutdown_and_close() -> None:
        raw = assoc_socket.socket
        if raw is None:
            return
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)
        raw.close()

    # Instance attribute: shadows AssociationSocket._shutdown_socket for this socket.
    assoc_socket._shutdown_socket = shutdown_and_close


def tune_association_socket(assoc_socket: Any, *, quickack: bool = True) -> None:
    """Set TCP_NODELAY on a pynetdicom ``AssociationSocket`` and install quick-ACK reads.

    Failures (e.g. a non-TCP socket in a test) are logged at DEBUG and leave the
    connection working as pynetdicom made it.
    """
    raw = getattr(assoc_socket, "socket", None)
    if not isinstance(raw, socket.socket):
        return
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        log.debug("TCP_NODELAY not set: %s", exc)
        return
    use_quickack = quickack and _QUICKACK is not None

    def recv(nr_bytes: int) -> bytearray:
        # The socket of the moment: an SCU's TLS connect replaces the one tuned here by
        # its SSLSocket (same descriptor, so TCP_NODELAY stays).
        sock = assoc_socket.socket
        if sock is None:  # closed by another thread: as a read on a closed socket
            raise OSError(errno.EBADF, "the connection is closed")
        return recv_exact(sock, nr_bytes, quickack=use_quickack)

    # Instance attribute: shadows AssociationSocket.recv for this connection only.
    assoc_socket.recv = recv
