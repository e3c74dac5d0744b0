"""A real HTTP pipeline platform for tests (stdlib ``ThreadingHTTPServer`` on port 0).

It behaves like a platform with idempotency keys (IETF draft-ietf-httpapi-idempotency-
key-header): the first successful request for a key creates a job; a repeat of that key
gets the stored answer and creates nothing. Knobs make it fail the first N calls, fail
at random (``flaky``), refuse some jobs with 4xx, answer slowly, hold requests behind a
gate, or run a hook (e.g. kill the submitter) after a job was created and before the
answer is sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    """One request as the platform saw it."""

    key: str
    body: dict[str, Any]
    status: int
    at: float


@dataclass
class PlatformServer:
    """``with PlatformServer(fail_first=2) as platform: ... platform.url ...``"""

    fail_first: int = 0
    fail_status: int = 503
    reject: Callable[[dict[str, Any]], tuple[int, str] | None] | None = None
    delay_s: float = 0.0
    gate: threading.Event | None = None
    on_created: Callable[[str], None] | None = None
    flaky: Callable[[], bool] | None = None  # True: answer this call with fail_status
    requests: list[Seen] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)  # idempotency key -> platform id
    arrived: int = 0  # requests received, counted before the gate
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> PlatformServer:
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                key = self.headers.get("Idempotency-Key", "")
                status, answer = platform._answer(key, body)
                self.send_response(status)
                payload = json.dumps(answer).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.gate is not None:
            self.gate.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/jobs"

    def keys(self) -> list[str]:
        """Idempotency keys in the order requests arrived."""
        with self._lock:
            return [r.key for r in self.requests]

    def created_order(self) -> list[str]:
        """Keys of created jobs in creation order."""
        with self._lock:
            return list(self.created)

    def _answer(self, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.arrived += 1
        if self.gate is not None:
            self.gate.wait(60)
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            if key in self.created:  # a repeat of a key that succeeded: same answer, no new job
                status, answer = 200, {"id": self.created[key], "replayed": True}
            elif self.fail_first > 0:
                self.fail_first -= 1
                status, answer = self.fail_status, {"error": "platform busy"}
            elif self.flaky is not None and self.flaky():
                status, answer = self.fail_status, {"error": "platform busy"}
            elif self.reject is not None and (refused := self.reject(body)) is not None:
                status, answer = refused[0], {"error": refused[1]}
            else:
                platform_id = f"plat-{len(self.created) + 1}"
                self.created[key] = platform_id
                status, answer = 201, {"id": platform_id}
            self.requests.append(Seen(key, body, status, time.monotonic()))
        if status == 201 and self.on_created is not None:
            self.on_created(key)
        return status, answer
