"""STOW-RS ingest (PS3.18 §10.5): ``multipart/related; type="application/dicom"`` in,
each part stored exactly as a C-STORE would be, the Store Instances Response out.

:class:`StowReceiver` reads the request body as it arrives (python-multipart's streaming
parser) and hands every complete part to the SCP's one store path
(:meth:`streams.scp.handlers.StoreHandler.store_instance`): the same checks, watermark,
atomic durable write, ``instance.received`` and delivery (Kafka ack or outbox) as
C-STORE. Parts are stored in a small thread pool of their own -- the store path blocks
until the event is durable, and the outbox writes through the loop's default executor,
which must stay free -- at most ``concurrency`` at a time, and the body is read no
faster than that, so memory holds a few parts, not the request. The answer is sent only
once every part has its outcome, i.e. every stored instance is durable.

Each part is a DICOM Part 10 file: its File Meta Information gives the SOP Class, SOP
Instance and Transfer Syntax UIDs that a C-STORE-RQ would carry, and the data set after
it is stored behind a Part 10 header composed as for C-STORE (Source AE Title
``DICOMWEB``). The event says ``calling_ae: "DICOMWEB"``, ``calling_host``: the HTTP
client's address, ``association_id``: a uuid4 per HTTP request.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterable, Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from streams.dicomweb.response import PartResult, store_instances_response
from streams.scp.gate import AssociationInfo
from streams.scp.statuses import CANNOT_UNDERSTAND
from streams.storage.part10 import read_part10

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

log = logging.getLogger(__name__)

#: The calling AE title of instances received over STOW-RS (events, file meta).
STOW_CALLING_AE = "DICOMWEB"
DICOM = b"application/dicom"


#: The SCP's store path, :meth:`streams.scp.handlers.StoreHandler.store_instance`:
#: ``(origin, *, sop_class_uid, sop_instance_uid, transfer_syntax_uid, data,
#: study_instance_uid) -> PS3.4 status``, blocking, never raising.
StoreInstance = Callable[..., int]


class StowError(Exception):
    """A request refused as a whole: ``status`` is the HTTP status (400, 404, 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Parts:
    """Parts completed by the parser callbacks, not yet handed to the store."""

    done: list[tuple[bytes, bytearray]] = field(default_factory=list)
    headers: dict[bytes, bytes] = field(default_factory=dict)
    field_name: bytearray = field(default_factory=bytearray)
    value: bytearray = field(default_factory=bytearray)
    body: bytearray = field(default_factory=bytearray)
    open: bool = False
    ended: bool = False

    def callbacks(self) -> MultipartCallbacks:
        def begin() -> None:
            self.headers, self.body, self.open = {}, bytearray(), True

        def header_field(data: bytes, start: int, end: int) -> None:
            self.field_name += data[start:end]

        def header_value(data: bytes, start: int, end: int) -> None:
            self.value += data[start:end]

        def header_end() -> None:
            self.headers[bytes(self.field_name).lower()] = bytes(self.value)
            self.field_name, self.value = bytearray(), bytearray()

        def data(data: bytes, start: int, end: int) -> None:
            self.body += data[start:end]

        def part_end() -> None:
            self.done.append((self.headers.get(b"content-type", DICOM), self.body))
            self.open = False

        def end() -> None:
            self.ended = True

        return {
            "on_part_begin": begin,
            "on_header_field": header_field,
            "on_header_value": header_value,
            "on_header_end": header_end,
            "on_part_data": data,
            "on_part_end": part_end,
            "on_end": end,
        }


def _boundary(content_type: str) -> bytes:
    """The boundary of a STOW-RS request, or :class:`StowError` (415, 400)."""
    kind, params = parse_options_header(content_type)
    if kind.lower() != b"multipart/related":
        raise StowError(
            415,
            f'STOW-RS takes multipart/related; type="application/dicom", not '
            f"{kind.decode(errors='replace')[:80] or 'no Content-Type'}",
        )
    part_type = params.get(b"type", DICOM).lower()
    if part_type != DICOM:
        raise StowError(
            415,
            f'only type="application/dicom" parts are accepted, not '
            f"{part_type.decode(errors='replace')[:80]!r} (no DICOM JSON/XML metadata)",
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise StowError(400, "the multipart/related Content-Type has no boundary")
    return boundary


class StowReceiver:
    """Receive STOW-RS requests for ``ae_titles`` into ``store`` (see the module)."""

    def __init__(
        self, store: StoreInstance, ae_titles: Collection[str], *, concurrency: int = 4
    ) -> None:
        self._store = store
        self._ae_titles = frozenset(ae_titles)
        self._concurrency = max(1, concurrency)
        self._executor = ThreadPoolExecutor(self._concurrency, thread_name_prefix="stow-store")

    def close(self) -> None:
        """Stop the store threads (after the requests in progress)."""
        self._executor.shutdown(wait=True)

    async def receive(
        self,
        ae_title: str,
        study_instance_uid: str | None,
        content_type: str,
        body: AsyncIterable[bytes],
        client_host: str,
    ) -> tuple[int, dict[str, Any]]:
        """Store every part of one request; ``(HTTP status, Store Instances Response)``.

        Raises :class:`StowError` for a request refused as a whole (unknown AE title 404,
        wrong media type 415, malformed multipart with nothing stored 400).
        """
        if ae_title not in self._ae_titles:
            known = ", ".join(sorted(self._ae_titles)) or "none"
            raise StowError(404, f"no AE title {ae_title[:64]!r} here; scp.ae_titles: {known}")
        parts = _Parts()
        parser = MultipartParser(_boundary(content_type), parts.callbacks())
        origin = AssociationInfo(str(uuid.uuid4()), ae_title, STOW_CALLING_AE, client_host)
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self._concurrency)
        pending: list[asyncio.Future[PartResult]] = []
        problem = ""

        async def hand_over() -> None:
            while parts.done:
                kind, data = parts.done.pop(0)
                await slots.acquire()
                future = loop.run_in_executor(
                    self._executor, self._store_part, origin, kind, data, study_instance_uid
                )
                future.add_done_callback(lambda _f: slots.release())
                pending.append(future)

        try:
            async for chunk in body:
                parser.write(chunk)
                await hand_over()
            parser.finalize()
            if parts.open or not parts.ended:
                problem = "the multipart body ends before its closing boundary"
        except MultipartParseError as exc:
            problem = f"malformed multipart body: {exc}"
        await hand_over()
        results = list(await asyncio.gather(*pending))
        stored = sum(1 for r in results if r.stored)
        log.info(
            "STOW-RS to %s from %s: %d part(s), %d stored%s",
            ae_title, client_host, len(results), stored, f"; {problem}" if problem else "",
        )  # fmt: skip
        if problem and not stored:
            raise StowError(400, f"{problem}; nothing was stored")
        if not results:
            raise StowError(400, "the request has no parts; nothing was stored")
        return store_instances_response(results)

    def _store_part(
        self, origin: AssociationInfo, kind: bytes, data: bytearray, study: str | None
    ) -> PartResult:
        """Store one part (in a store thread)."""
        if parse_options_header(kind)[0].lower() != DICOM:
            log.warning("STOW-RS part of type %r refused", kind[:80])
            return PartResult("", "", CANNOT_UNDERSTAND)
        meta = read_part10(data)
        if meta is None:
            log.warning("STOW-RS part is not a DICOM Part 10 file; refused")
            return PartResult("", "", CANNOT_UNDERSTAND)
        status = self._store(
            origin,
            sop_class_uid=meta.sop_class_uid,
            sop_instance_uid=meta.sop_instance_uid,
            transfer_syntax_uid=meta.transfer_syntax_uid,
            data=memoryview(data)[meta.data_set_offset :],
            study_instance_uid=study,
        )
        return PartResult(meta.sop_class_uid, meta.sop_instance_uid, status)
