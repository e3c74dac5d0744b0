"""STOW-RS sender: a batch of instances to a DICOMweb server in one request (PS3.18 §10.5).

Uses ``dicomweb-client`` (its own retries off: whoever calls decides about retrying) and
maps the answer to one :class:`~streams.scu.outcome.SendOutcome` per item, as the C-STORE
sender does:

* an instance listed in ``ReferencedSOPSequence`` is ``sent`` (``status`` is its
  ``WarningReason`` if any, else 0x0000);
* one listed in ``FailedSOPSequence`` is ``refused`` with its ``FailureReason``;
* one listed in neither is ``failed`` / ``not_confirmed``;
* an HTTP error without a readable Store Instances Response fails every instance with
  ``http_error`` and the HTTP status (``http_status``); no connection → ``connect_failed``,
  no answer in time → ``timeout``.

PS3.18 Table 10.5.3-1: 200 all stored, 202 some failed (or warnings), 409 none stored;
the body of each is a Store Instances Response (application/dicom+json).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, Literal

import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset

from streams.config.fields import mask_url
from streams.scu.outcome import (
    BAD_RESPONSE,
    CONNECT,
    HTTP_ERROR,
    NOT_CONFIRMED,
    TIMEOUT,
    BatchSender,
    FailureReason,
    ItemLike,
    Progress,
    SendOutcome,
    as_items,
    describe_status,
)
from streams.scu.reading import Probe, ReadError, load, probe

log = logging.getLogger(__name__)

AuthKind = Literal["none", "basic", "bearer"]


@dataclass(frozen=True, slots=True)
class StowAuth:
    """How to authenticate: nothing, HTTP Basic, or a bearer token (secrets not in repr)."""

    kind: AuthKind = "none"
    username: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)


class StowSender(BatchSender):
    """Store batches on the DICOMweb service at ``url`` (its base, e.g. ``.../dicom-web``)."""

    def __init__(self, url: str, *, auth: StowAuth | None = None, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.auth = auth or StowAuth()
        self.timeout_s = timeout_s

    def __str__(self) -> str:
        return mask_url(self.url)

    def send_batch(
        self, items: Sequence[ItemLike], progress: Progress | None = None
    ) -> list[SendOutcome]:
        """POST ``items`` in one multipart request; one outcome per item, in order."""
        batch = as_items(list(items))
        results: list[SendOutcome | None] = [None] * len(batch)
        ready: list[tuple[Probe, Dataset]] = []
        for index, item in enumerate(batch):
            found = probe(index, item)
            if isinstance(found, SendOutcome):
                results[index] = found
                continue
            try:
                ready.append((found, load(found)))
            except ReadError as exc:
                results[index] = exc.outcome
        if ready:
            for outcome in self._post(ready):
                results[outcome.index] = outcome
        done = [r for r in results if r is not None]
        assert len(done) == len(batch), "every item gets an outcome"
        if progress is not None:
            for outcome in done:
                progress(outcome)
        return done

    def _post(self, ready: list[tuple[Probe, Dataset]]) -> list[SendOutcome]:
        entries = [entry for entry, _ in ready]
        answered: list[int] = []
        try:
            client = self._client(answered)
            body = client.store_instances([ds for _, ds in ready])
        except requests.HTTPError as exc:
            return self._from_error(entries, exc.response)
        except requests.Timeout:
            return _all(entries, TIMEOUT, f"no answer from {self} in {self.timeout_s:g} s")
        except requests.RequestException as exc:
            log.debug("STOW-RS to %s: %s", self, exc)
            return _all(entries, CONNECT, f"cannot reach {self}: {type(exc).__name__}")
        except ValueError as exc:  # an answer dicomweb-client could not parse
            log.debug("STOW-RS answer of %s: %s", self, exc)
            return _all(entries, BAD_RESPONSE, f"unreadable answer from {self}")
        http_status = answered[-1] if answered else None
        return outcomes_from_response(entries, body, http_status=http_status)

    def _client(self, answered: list[int]) -> DICOMwebClient:
        session = requests.Session()
        headers: dict[str, str] = {}
        if self.auth.kind == "basic":
            session.auth = (self.auth.username, self.auth.password)
        elif self.auth.kind == "bearer":
            headers["Authorization"] = f"Bearer {self.auth.token}"

        def keep_status(response: requests.Response, *_: Any, **__: Any) -> requests.Response:
            answered.append(response.status_code)
            return response

        client = DICOMwebClient(
            self.url, session=session, headers=headers, callback=keep_status, timeout=self.timeout_s
        )
        client.set_http_retry_params(retry=False)
        return client

    def _from_error(
        self, entries: list[Probe], response: requests.Response | None
    ) -> list[SendOutcome]:
        status = response.status_code if response is not None else None
        body = _response_dataset(response) if response is not None else None
        if body is not None and ("FailedSOPSequence" in body or "ReferencedSOPSequence" in body):
            return outcomes_from_response(entries, body, http_status=status)
        phrase = _phrase(status)
        outcomes = _all(entries, HTTP_ERROR, f"{self} answered HTTP {status}{phrase}")
        return [_with_http(o, status) for o in outcomes]


def outcomes_from_response(
    entries: Iterable[Probe], body: Dataset, *, http_status: int | None = None
) -> list[SendOutcome]:
    """Per-instance outcomes from a Store Instances Response (PS3.18 §10.5.3.1)."""
    stored: dict[str, int] = {}
    for item in body.get("ReferencedSOPSequence", []):
        stored[str(item.get("ReferencedSOPInstanceUID", ""))] = int(item.get("WarningReason", 0))
    refused: dict[str, int] = {}
    for item in body.get("FailedSOPSequence", []):
        refused[str(item.get("ReferencedSOPInstanceUID", ""))] = int(item.get("FailureReason", 0))
    out: list[SendOutcome] = []
    for entry in entries:
        uid = entry.sop_instance_uid
        if uid in refused:
            code = refused[uid]
            outcome = SendOutcome(
                entry.index,
                entry.item.label,
                "refused",
                sop_instance_uid=uid,
                sop_class_uid=entry.sop_class_uid,
                transfer_syntax_uid=entry.transfer_syntax_uid,
                status=code,
                error=f"refused by the DICOMweb server: {describe_status(code)}",
                http_status=http_status,
            )
        elif uid in stored:
            outcome = SendOutcome(
                entry.index,
                entry.item.label,
                "sent",
                sop_instance_uid=uid,
                sop_class_uid=entry.sop_class_uid,
                transfer_syntax_uid=entry.transfer_syntax_uid,
                status=stored[uid],
                http_status=http_status,
            )
        else:
            outcome = _with_http(
                entry.failed(NOT_CONFIRMED, "the DICOMweb server's answer does not list it"),
                http_status,
            )
        out.append(outcome)
    return out


def _response_dataset(response: requests.Response) -> Dataset | None:
    kind = response.headers.get("Content-Type", "").split(";")[0].strip()
    if kind not in ("application/dicom+json", "application/json") or not response.content:
        return None
    try:
        return Dataset.from_json(response.json())
    except Exception as exc:  # not a DICOM JSON object
        log.debug("STOW-RS error body is not a Store Instances Response: %s", exc)
        return None


def _all(entries: Iterable[Probe], reason: FailureReason, error: str) -> list[SendOutcome]:
    return [entry.failed(reason, error) for entry in entries]


def _with_http(outcome: SendOutcome, status: int | None) -> SendOutcome:
    return replace(outcome, http_status=status)


def _phrase(status: int | None) -> str:
    if status is None:
        return ""
    try:
        return f" {HTTPStatus(status).phrase}"
    except ValueError:
        return ""
