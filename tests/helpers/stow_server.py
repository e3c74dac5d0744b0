"""A small real STOW-RS server for tests (stdlib HTTP on port 0).

It reads the multipart/related request like a DICOMweb server would (each part a Part 10
instance), records what it got, and answers a PS3.18 Store Instances Response built by a
test-chosen policy: ``refuse(uid)`` gives a FailureReason (or None to store it),
``omit(uid)`` leaves an instance out of the answer. ``status`` forces an HTTP status with
a plain-text body (e.g. 503), ``delay_s`` answers late.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydicom import dcmread


@dataclass
class Post:
    """One STOW-RS request as the server saw it."""

    path: str
    headers: dict[str, str]
    sop_instance_uids: list[str]


@dataclass
class StowServer:
    """``with StowServer(refuse=...) as server: ... server.url ...``"""

    refuse: Callable[[str], int | None] = lambda _uid: None
    omit: Callable[[str], bool] = lambda _uid: False
    status: int | None = None
    delay_s: float = 0.0
    posts: list[Post] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: Any = None

    @property
    def url(self) -> str:
        """The DICOMweb base URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/dicom-web"

    def __enter__(self) -> StowServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self._body()
                uids = _instances(self.headers.get("Content-Type", ""), body)
                with server._lock:
                    server.posts.append(Post(self.path, dict(self.headers.items()), uids))
                if server.delay_s:
                    time.sleep(server.delay_s)  # a slow server, not a test wait
                status, kind, payload = server._answer(uids)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout test)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while size := int(self.rfile.readline().strip() or b"0", 16):
                        out += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                    return bytes(out)
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, uids: list[str]) -> tuple[int, str, bytes]:
        if self.status is not None:
            return self.status, "text/plain", b"Service Unavailable"
        stored, failed = [], []
        for uid in uids:
            if self.omit(uid):
                continue
            reason = self.refuse(uid)
            item: dict[str, Any] = {"00081155": {"vr": "UI", "Value": [uid]}}
            if reason is None:
                stored.append(item)
            else:
                item["00081197"] = {"vr": "US", "Value": [reason]}
                failed.append(item)
        answer: dict[str, Any] = {}
        if stored:
            answer["00081199"] = {"vr": "SQ", "Value": stored}
        if failed:
            answer["00081198"] = {"vr": "SQ", "Value": failed}
        status = 200 if not failed else (409 if not stored else 202)
        return status, "application/dicom+json", json.dumps(answer).encode()


def _instances(content_type: str, body: bytes) -> list[str]:
    """SOP Instance UIDs of the parts of a multipart/related body."""
    boundary = content_type.rsplit("boundary=", maxsplit=1)[-1].strip('"')
    uids = []
    for part in body.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break
        _headers, _, payload = part.partition(b"\r\n\r\n")
        ds = dcmread(io.BytesIO(payload.removesuffix(b"\r\n")), stop_before_pixels=True)
        uids.append(str(ds.SOPInstanceUID))
    return uids
