"""Accepting an export request: checks, staging of its files, the ``export.requested`` event.

One path for ``POST /exports`` and ``dicom-adapter export send``: the destinations must be
configured, every file must be a DICOM Part 10 file, and its bytes are staged under
``<storage>/exports/<request_id>/`` (:mod:`streams.storage.exports`) before the event is
written, so nothing a request names can disappear before it is delivered. A request id
comes from the client (idempotency) or is a new uuid4; it is the Kafka key, so every
event of one request lands on one partition, and :func:`load_request` reads only that.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from processors.export.state import ExportState, fold
from streams.config import AdapterConfig
from streams.errors import UsageError
from streams.events import Envelope, ExportFile, ExportRequested, envelope
from streams.kafka import Connection, LogReader, Publisher, partition_for, read_to_end
from streams.scu import SendItem, SendOutcome
from streams.scu.reading import Probe, probe
from streams.storage import uri_to_path
from streams.storage.exports import link_into_export, within, write_into_export

#: What a client may use as a request id (also the Idempotency-Key header).
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class ExportRequestError(UsageError):
    """A request that cannot be accepted as it is (HTTP 400, CLI exit 2); nothing was
    written."""


@dataclass(frozen=True, slots=True)
class Upload:
    """One file of a request: bytes sent with it, or a path on this machine."""

    label: str
    data: bytes | None = None
    path: Path | None = None

    def item(self) -> SendItem:
        """The item the identity probe reads."""
        if self.data is not None:
            return SendItem.of_bytes(self.data, self.label)
        assert self.path is not None
        return SendItem.file(self.path, self.label)


def request_id_of(*candidates: str | None) -> str:
    """The client's request id (all given ones must agree), else a new uuid4."""
    given = {c for c in candidates if c}
    if len(given) > 1:
        raise ExportRequestError(
            "the Idempotency-Key header and request_id differ; give one, or the same twice"
        )
    if not given:
        return str(uuid.uuid4())
    (value,) = given
    if not REQUEST_ID.fullmatch(value):
        raise ExportRequestError(
            f"request id {value[:80]!r} is not valid: use 1-128 of A-Z a-z 0-9 . _ : - "
            "starting with a letter or digit"
        )
    return value


def check_destinations(config: AdapterConfig, names: Iterable[str]) -> tuple[str, ...]:
    """``names`` without repeats, if every one is in ``export.destinations``."""
    wanted = tuple(dict.fromkeys(n for n in names if n))
    if not wanted:
        raise ExportRequestError("name at least one destination (export.destinations[].name)")
    known = [d.name for d in config.export.destinations]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        listed = ", ".join(known) or "none configured"
        raise ExportRequestError(
            f"unknown destination(s) {', '.join(unknown)}; export.destinations has: {listed}"
        )
    return wanted


def check_local_files(storage: Path, uris: Sequence[str]) -> list[Upload]:
    """Files named by a request that must already be under the storage folder (the
    REST API's JSON form): absolute paths or ``file://`` URIs, no way out of storage."""
    uploads = []
    for index, uri in enumerate(uris):
        try:
            path = uri_to_path(uri)
        except ValueError as exc:
            raise ExportRequestError(f"files[{index}]: {exc}") from None
        if not within(storage, path):
            raise ExportRequestError(
                f"files[{index}]: {uri[:200]!r} is not under the storage folder {storage}; "
                "upload the file instead (multipart/form-data)"
            )
        uploads.append(Upload(f"files[{index}]", path=path))
    return uploads


def identify(uploads: Sequence[Upload]) -> list[Probe]:
    """The DICOM identity of every file, or one error naming each that is not DICOM."""
    found: list[Probe] = []
    problems: list[str] = []
    for index, upload in enumerate(uploads):
        result = probe(index, upload.item())
        if isinstance(result, SendOutcome):
            problems.append(f"{upload.label}: {result.error}")
        else:
            found.append(result)
    if problems:
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        shown = "; ".join(problems[:5]) + more
        raise ExportRequestError(f"not exportable: {shown}")
    if not found:
        raise ExportRequestError("the request has no files")
    return found


def stage(storage: Path, request_id: str, probes: Sequence[Probe]) -> tuple[ExportFile, ...]:
    """Stage every probed file into the request's folder (one per SOP Instance UID, the
    first wins); raises :class:`~streams.storage.payloads.StagingError`."""
    files: dict[str, ExportFile] = {}
    for entry in probes:
        uid = entry.sop_instance_uid
        if uid in files:
            continue
        item = entry.item
        if item.data is not None:
            target = write_into_export(storage, request_id, uid, item.data)
        else:
            assert item.path is not None
            target = link_into_export(storage, request_id, uid, item.path)
        files[uid] = ExportFile(str(target), uid, entry.sop_class_uid)
    return tuple(files.values())


async def write_request(
    publisher: Publisher, topic: str, event: ExportRequested, *, source: str
) -> Envelope:
    """Write ``export.requested`` under the request id (acks=all)."""
    env = envelope(event, source=source, time_ms=int(time.time() * 1000))
    await publisher.publish(topic, event.request_id, env)
    return env


async def load_request(kafka: Connection, topic: str, request_id: str) -> tuple[ExportState, ...]:
    """What the ledger says about one request (one state per destination; empty when
    unknown), read from the one partition its events are on."""
    async with LogReader(kafka, client_id="dicom-adapter-exports") as reader:
        partitions = await reader.partitions(topic)
    if not partitions:
        return ()
    partition = partition_for(request_id, len(partitions))
    found = await read_to_end(kafka, topic, {partition: None}, client_id="dicom-adapter-exports")
    ledger = fold((r.key or "", r.envelope) for r in found.records if r.key == request_id)
    return ledger.request(request_id)
