"""pynetdicom's bundled ``storescp`` app with TCP_NODELAY on accepted sockets.

The app has no option for it and pynetdicom never sets it (reference pitfall 1), so,
as the reference's ``pyn_app_nodelay.py`` did, accepted sockets get TCP_NODELAY before
the app runs unchanged. ``--as-shipped`` (first argument) skips the patch.

    python -m bench.ingest.pyn_app [--as-shipped] PORT -od DIR -ba 127.0.0.1
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from pynetdicom.apps.storescp.storescp import main
from pynetdicom.transport import AssociationServer

_get_request = AssociationServer.get_request


def _get_request_nodelay(self: AssociationServer) -> Any:
    client, address = _get_request(self)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, address


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--as-shipped"]:
        argv = argv[1:]
    else:
        AssociationServer.get_request = _get_request_nodelay  # type: ignore[method-assign]
    main(argv)  # type: ignore[no-untyped-call]
