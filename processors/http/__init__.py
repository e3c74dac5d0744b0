"""The HTTP endpoint of every process: ``/healthz``, ``/readyz``, ``/metrics`` (issue 6).

One server per process, on ``http.host``/``http.port`` (``http.port: 0`` disables it),
run inside the process's event loop. Roles register readiness checks on a
:class:`Readiness` before the server starts::

    readiness = Readiness()
    assigned = readiness.flag("partitions assigned")        # set() in on_partitions_assigned
    readiness.add("storage writable", storage_writable(root))
    async with open_http_server(config.http, readiness):
        await run_role(...)

Other routers (issue 7's REST API) are added to the app from :func:`create_app` and the
app passed to :func:`open_http_server`.
"""

from processors.http.app import create_app
from processors.http.auth import OPEN_PATHS, ApiAuth
from processors.http.checks import storage_writable
from processors.http.readiness import (
    Check,
    NotReadyError,
    Readiness,
    ReadyFlag,
)
from processors.http.server import HttpServer, HttpServerError, open_http_server

__all__ = [
    "OPEN_PATHS",
    "ApiAuth",
    "Check",
    "HttpServer",
    "HttpServerError",
    "NotReadyError",
    "Readiness",
    "ReadyFlag",
    "create_app",
    "open_http_server",
    "storage_writable",
]
