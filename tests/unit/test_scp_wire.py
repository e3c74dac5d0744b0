"""The fast C-STORE path's wire formats match pynetdicom's own encoders byte for byte."""

from __future__ import annotations

import io

import pytest
from pynetdicom.dimse_messages import C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF

from streams.scp.wire import (
    WireError,
    c_store_rsp,
    command_pdu,
    command_uid,
    command_us,
    iter_pdvs,
    parse_command,
    pdu_header,
)

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # pydicom, for "../../x"
@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xC211])
@pytest.mark.parametrize("sop_uid", ["1.2.3.4", "1.2.3.45", "../../x"])
def test_c_store_rsp_pdu_is_what_pynetdicom_sends(status: int, sop_uid: str) -> None:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID = CT
    rsp.AffectedSOPInstanceUID = sop_uid
    rsp.Status = status
    msg = C_STORE_RSP()
    msg.primitive_to_message(rsp)
    (primitive,) = list(msg.encode_msg(5, 16382))
    pdu = P_DATA_TF()
    pdu.from_primitive(primitive)
    ours = command_pdu(
        5, c_store_rsp(sop_class_uid=CT, sop_instance_uid=sop_uid, message_id=7, status=status)
    )
    assert ours == pdu.encode()


def test_c_store_rq_command_and_pdvs_are_read_back() -> None:
    rq = C_STORE()
    rq.MessageID = 12
    rq.AffectedSOPClassUID = CT
    rq.AffectedSOPInstanceUID = "1.2.3.4.5"
    rq.Priority = 2
    rq.DataSet = io.BytesIO(b"\x08\x00\x18\x00" + b"\x00" * 60)
    msg = C_STORE_RQ()
    msg.primitive_to_message(rq)
    pdus = []
    for primitive in msg.encode_msg(3, 32):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        pdus.append(pdu.encode())
    command, data, last_seen = bytearray(), bytearray(), False
    for raw in pdus:
        assert pdu_header(raw[:6]) == (0x04, len(raw) - 6)
        for pdv in iter_pdvs(memoryview(raw)[6:]):
            assert pdv.context_id == 3
            (command if pdv.is_command else data).extend(pdv.fragment)
            last_seen = pdv.is_last and not pdv.is_command
    assert last_seen and len(data) == 64
    values = parse_command(command)
    assert command_us(values, 0x0100) == 0x0001
    assert command_us(values, 0x0110) == 12
    assert command_us(values, 0x0700) == 2
    assert command_uid(values, 0x0002) == CT
    assert command_uid(values, 0x1000) == "1.2.3.4.5"
    assert command_us(values, 0x9999) is None


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x00\x00",  # truncated item header
        b"\x00\x00\x00\x10\x01\x03abc",  # item longer than the PDU
        b"\x00\x00\x00\x01\x01\x03",  # item shorter than its own header
    ],
)
def test_malformed_pdvs_raise(body: bytes) -> None:
    with pytest.raises(WireError):
        list(iter_pdvs(memoryview(body)))


def test_malformed_command_raises() -> None:
    with pytest.raises(WireError):
        parse_command(b"\x00\x00\x00\x01\x10\x00\x00\x00ab")  # value runs past the end
    with pytest.raises(WireError):
        parse_command(b"\x08\x00\x18\x00\x02\x00\x00\x00ab")  # not group 0000
