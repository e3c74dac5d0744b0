"""The C-STORE handler never raises: an unexpected error is 0xC211 and one log line.

The publishing tests run the handler as pynetdicom does, in a thread of its own, with
the real bridge, delivery and outbox; only the publisher is a stand-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka.errors import KafkaConnectionError
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, ImplicitVRLittleEndian

from streams.events import Envelope
from streams.scp.appender import DeliveryError
from streams.scp.bridge import LoopBridge
from streams.scp.delivery import Delivery, Publisher
from streams.scp.gate import AssociationGate
from streams.scp.handlers import StoreHandler
from streams.scp.outbox import Outbox
from streams.scp.policy import AssociationPolicy
from streams.scp.statuses import SUCCESS, UNEXPECTED_ERROR

PATIENT_ID = "PHI-PATIENT-ID"
SOP_UID = "1.2.826.0.1.3680043.8.498.1"


class NullSink:
    def deliver(self, topic: str, key: str, env: Envelope) -> None:
        raise AssertionError("nothing should be delivered")


def test_unexpected_error_is_cannot_understand_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = AssociationGate(AssociationPolicy.build(["CT"]))
    handler = StoreHandler(storage=tmp_path, gate=gate, sink=NullSink(), topic="t", source="s")
    # An association the gate never admitted: the handler's lookup fails inside.
    event = SimpleNamespace(assoc=object(), request=None, context=None)
    with caplog.at_level(logging.DEBUG, logger="streams.scp.handlers"):
        assert handler.on_store(event) == UNEXPECTED_ERROR
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "0xC211" in errors[0].getMessage()
    assert errors[0].exc_info is None  # the traceback only at DEBUG
    assert handler.on_echo(event) == SUCCESS
    assert list(tmp_path.iterdir()) == []


# -- publishing: a broker error is the outbox's, a bug is an unexpected error -------------


class FailingPublisher:
    """Every publish raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def publish(self, topic: str, key: str, env: Envelope) -> tuple[int, int]:
        raise self.error


class Admitted:
    """What the gate reads of a pynetdicom association at EVT_REQUESTED."""

    def __init__(self) -> None:
        primitive = SimpleNamespace(
            called_ae_title="CT", calling_ae_title="MOD", presentation_context_definition_list=[]
        )
        self.requestor = SimpleNamespace(primitive=primitive, address="127.0.0.1")
        self.acceptor = SimpleNamespace(supported_contexts=[])


def _data_set() -> bytes:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = SOP_UID
    ds.PatientName = "DOE^JANE"
    ds.PatientID = PATIENT_ID
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    buf = DicomBytesIO()
    buf.is_implicit_VR = True
    buf.is_little_endian = True
    write_dataset(buf, ds)
    return bytes(buf.getvalue())


async def _store_with(tmp_path: Path, publisher: Publisher) -> tuple[int, Outbox]:
    """One C-STORE through handler, bridge and delivery; the status and the outbox."""

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Publisher]:
        yield publisher

    gate = AssociationGate(AssociationPolicy.build(["CT"]))
    assoc = Admitted()
    gate.on_requested(SimpleNamespace(assoc=assoc))
    outbox = Outbox(tmp_path / "outbox", durable=False)
    async with Delivery(connect, outbox, close_drain_timeout_s=0.05) as delivery:
        handler = StoreHandler(
            storage=tmp_path / "storage",
            gate=gate,
            sink=LoopBridge(asyncio.get_running_loop(), delivery.deliver),
            topic="t",
            source="s",
            durable=False,
        )
        status = await asyncio.to_thread(
            handler.store,
            assoc,
            sop_class_uid=CTImageStorage,
            sop_instance_uid=SOP_UID,
            transfer_syntax_uid=ImplicitVRLittleEndian,
            data=_data_set(),
        )
        return status, outbox


async def test_a_bug_in_publishing_is_an_unexpected_error_logged_with_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="streams.scp")
    bug = TypeError(f"cannot serialise patient {PATIENT_ID}")  # a message quoting PHI
    status, outbox = await _store_with(tmp_path, FailingPublisher(bug))
    try:
        assert status == UNEXPECTED_ERROR
        assert outbox.pending_bytes == 0  # not taken for an outage
    finally:
        outbox.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert "0xC211" in message and SOP_UID in message
    assert "Traceback (most recent call last)" in message and "in publish" in message
    assert "TypeError" in message
    loud = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert not [r for r in loud if PATIENT_ID in r.getMessage() or r.exc_info]
    # The whole exception, message included, is there for whoever turns DEBUG on.
    assert any(r.exc_info and r.exc_info[1] is bug for r in caplog.records)


async def test_a_broker_error_is_success_once_the_event_is_in_the_outbox(tmp_path: Path) -> None:
    status, outbox = await _store_with(tmp_path, FailingPublisher(KafkaConnectionError("down")))
    try:
        assert status == SUCCESS
        entries, _ = outbox.read()
        assert [e.envelope.data.sop_instance_uid for e in entries] == [SOP_UID]  # type: ignore[union-attr]
    finally:
        outbox.close()


# -- the bridge hands a bug on as it is ---------------------------------------------------


async def _through_bridge(error: Exception) -> None:
    async def deliver(topic: str, key: str, env: Envelope) -> None:
        raise error

    bridge = LoopBridge(asyncio.get_running_loop(), deliver)
    await asyncio.to_thread(bridge.deliver, "t", "k", None)  # type: ignore[arg-type]


async def test_the_bridge_raises_a_bug_unchanged_and_delivery_errors_as_such() -> None:
    bug = AttributeError("a bug")
    with pytest.raises(AttributeError) as raised:
        await _through_bridge(bug)
    assert raised.value is bug  # not turned into DeliveryError (0xA700)
    with pytest.raises(DeliveryError, match="disk full"):
        await _through_bridge(DeliveryError("outbox write failed: disk full"))
