"""The ``http`` platform: POST the job as JSON with ``Idempotency-Key: <job_id>``.

Mapping of answers (docs/submitters.md):

* 2xx → submitted; the platform's id is taken from a JSON body's ``job_id`` or ``id``;
* 408, 409, 425, 429 and every 5xx → retriable (``Retry-After`` is honoured as a floor
  for the backoff). 409 is what a platform answers while a request with the same
  idempotency key is still in progress (IETF draft-ietf-httpapi-idempotency-key-header);
* any other 4xx, and 1xx/3xx → permanent (a redirect means ``submitter.url`` is not the
  endpoint itself);
* timeouts and connection errors → retriable.

The job id is deterministic, so after a crash between the platform's answer and the
``job.submitted`` event the same key is sent again and the platform de-duplicates it.
"""

from __future__ import annotations

import logging
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from processors.submit.platform import PlatformJob, SubmitOutcome

log = logging.getLogger(__name__)

RETRIABLE_4XX = frozenset({408, 409, 425, 429})
_BODY_IN_ERROR = 200


class HttpPlatform:
    """POST jobs to ``url``; create it inside the running loop (it owns an httpx client)."""

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 30.0,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            headers={"User-Agent": "dicom-stream-adapter", **(headers or {})},
            follow_redirects=False,
            transport=transport,
        )

    async def submit(self, job: PlatformJob) -> SubmitOutcome:
        """POST ``job``; map the answer as described in the module docstring."""
        try:
            response = await self._client.post(
                self.url, json=job.to_json(), headers={"Idempotency-Key": job.job_id}
            )
        except httpx.TimeoutException as exc:
            return SubmitOutcome.retriable(f"timeout posting to {_safe(self.url)}: {_name(exc)}")
        except httpx.TransportError as exc:
            return SubmitOutcome.retriable(
                f"cannot reach {_safe(self.url)}: {_name(exc)}: {exc}".rstrip(": ")
            )
        except httpx.HTTPError as exc:
            return SubmitOutcome.permanent(f"request to {_safe(self.url)} failed: {_name(exc)}")
        return outcome_of(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def outcome_of(status: int, headers: httpx.Headers, body: bytes) -> SubmitOutcome:
    """Pure mapping of an HTTP answer to a :class:`SubmitOutcome`."""
    if 200 <= status < 300:
        return SubmitOutcome.submitted(_platform_id(body))
    text = f"HTTP {status}" + (f": {_snippet(body)}" if body else "")
    if status >= 500 or status in RETRIABLE_4XX:
        return SubmitOutcome.retriable(text, retry_after_s=retry_after_s(headers))
    if 300 <= status < 400:
        where = headers.get("location", "?")
        return SubmitOutcome.permanent(
            f"{text} redirect to {where}; set submitter.url to the final job endpoint"
        )
    return SubmitOutcome.permanent(text)


def retry_after_s(headers: httpx.Headers) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); 0 if absent."""
    value = headers.get("retry-after")
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    date = headers.get("date")
    try:
        now = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        now = None
    if now is None:
        return 0.0  # no server clock to compare with; the backoff alone decides
    return max(0.0, (when - now).total_seconds())


def _platform_id(body: bytes) -> str:
    if not body:
        return ""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(data, dict):
        return ""
    for key in ("job_id", "id"):
        value = data.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return ""


def _snippet(body: bytes) -> str:
    text = body[:_BODY_IN_ERROR].decode("utf-8", "replace").strip()
    return " ".join(text.split()) + ("…" if len(body) > _BODY_IN_ERROR else "")


def _name(exc: Exception) -> str:
    return type(exc).__name__


def _safe(url: str) -> str:
    """The URL without credentials or query (it may carry a token)."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(userinfo=b"", query=None, fragment=None))
