"""Senders of a chaos run: DCMTK ``storescu`` and pynetdicom, one outcome per C-STORE.

An outcome says whether the SCP answered and with which status. A C-STORE that got no
answer (the SCP was killed, the association aborted) is *unacknowledged*: the sender
does not re-send it, so each SOP Instance UID is stored at most by one C-STORE.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE

from tests.chaos.plan import Batch, Instance
from tests.helpers.dicom import make_ct, storescu, write_instances

SUCCESS = 0x0000


@dataclass(frozen=True)
class Outcome:
    """What the sender saw for one C-STORE."""

    instance: Instance
    answered: bool  # a C-STORE-RSP came back
    acked: bool  # ... with Success or a Warning (the instance is stored)
    status: str  # "0x0000", "0xA700", DCMTK's status text, or why nothing came back
    sender: str
    # When it reached the SCP, as far as the sender can tell (monotonic s): pynetdicom,
    # from the request to its answer; DCMTK, the storescu run that got through.
    sent: tuple[float, float] | None = None


def dataset(item: Instance) -> Dataset:
    """The planned instance as a tiny CT data set (Modality as planned)."""
    ds = make_ct(
        patient_id=item.patient,
        study_uid=item.study,
        series_uid=item.series,
        sop_uid=item.sop,
        instance_number=item.number,
        accession=f"ACC-{item.number}",
    )
    ds.Modality = item.modality
    return ds


def _acked_code(code: int) -> bool:
    return code == SUCCESS or (code & 0xF000) == 0xB000


_SENDING = re.compile(r"Sending file: (\S+)")
_RESPONSE = re.compile(r"Received Store Response \((.*)\)")


def parse_storescu(
    output: str, items: Sequence[Instance], sent: tuple[float, float] | None = None
) -> list[Outcome]:
    """Outcomes from ``storescu -v`` output: each "Sending file" line and the response
    that follows it (a status text; "Success" or a "Warning" means stored); ``sent`` is
    when that storescu ran."""
    by_sop = {i.sop: i for i in items}
    answers: dict[str, str] = {}
    current: str | None = None
    for line in output.splitlines():
        if sending := _SENDING.search(line):
            current = Path(sending.group(1)).stem
        elif (response := _RESPONSE.search(line)) and current is not None:
            answers[current] = response.group(1)
            current = None
    outcomes = []
    for sop, item in by_sop.items():
        text = answers.get(sop)
        acked = text is not None and (text == "Success" or text.startswith("Warning"))
        status = text if text is not None else "no response"
        outcomes.append(Outcome(item, text is not None, acked, status, "dcmtk", sent))
    return outcomes


def _storescu(port: int, files: list[Path], ae: str) -> str:
    try:
        done = storescu(
            port, files, aec=ae, extra=["-v", "-nh", "-td", "30", "-ta", "10"], timeout=90
        )
    except subprocess.TimeoutExpired as exc:
        return str(exc.stdout or "") + str(exc.stderr or "")
    return done.stdout + done.stderr


def send_dcmtk(port: int, batch: Batch, folder: Path, connect_s: float) -> list[Outcome]:
    """One association with DCMTK ``storescu`` (``-nh``: go on after a refusal).

    While the SCP does not accept the association (it is down), nothing was sent, so
    the sender tries again for up to ``connect_s`` seconds, as a modality would.
    """
    files = write_instances(folder, [dataset(i) for i in batch.instances])
    deadline = time.monotonic() + connect_s
    while True:
        began = time.monotonic()
        output = _storescu(port, files, batch.instances[0].ae)
        if "Association Accepted" in output or time.monotonic() > deadline:
            return parse_storescu(output, batch.instances, (began, time.monotonic()))
        time.sleep(0.3)  # paces reconnection attempts; not an assertion


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _associate(port: int, ae: AE, called: str, connect_s: float) -> Any:
    """Associate once the port listens. (pynetdicom 3 leaks its socket when the connect
    itself is refused: it calls shutdown() before close() on an unconnected socket.)"""
    deadline = time.monotonic() + connect_s
    while True:
        if _listening(port) or time.monotonic() > deadline:
            assoc = ae.associate("127.0.0.1", port, ae_title=called)
            if assoc.is_established or assoc.is_rejected or time.monotonic() > deadline:
                return assoc
            _close_socket(assoc)
        time.sleep(0.3)  # paces reconnection attempts; not an assertion


def _close_socket(assoc: Any) -> None:
    """Close the sender's socket: pynetdicom 3 leaves it open when the peer resets the
    connection mid-association (a ResourceWarning on the sending side only)."""
    wrapper = getattr(assoc.dul, "socket", None)
    sock = getattr(wrapper, "socket", None)
    if sock is not None:
        sock.close()


def _keep_responses(assoc: Any) -> None:
    """Work around pynetdicom 3.0's requestor race (docs/reliability.md, chaos seed
    1028): ``send_c_store`` can find the reactor not yet paused, the reactor then takes
    the C-STORE-RSP, logs "Received unexpected C-STORE service message" and drops it, and
    the sender waits out its DIMSE timeout. Responses go back to the DIMSE queue instead,
    where ``send_c_store`` reads them (the fix of the ingest baselines' ``pyn_send.py``)."""
    serve = assoc._serve_request

    def serve_or_give_back(msg: Any, context_id: int) -> None:
        if msg.is_valid_request:
            serve(msg, context_id)
        else:
            assoc.dimse.msg_queue.put((context_id, msg))

    assoc._serve_request = serve_or_give_back


def send_pynetdicom(port: int, batch: Batch, connect_s: float) -> list[Outcome]:
    """One association with pynetdicom; stops at the first C-STORE without an answer.
    Connects as :func:`send_dcmtk` does."""
    datasets = [dataset(i) for i in batch.instances]
    ae = AE(ae_title="CHAOS-PYN")
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 10, 30, 30
    first = datasets[0]
    ae.add_requested_context(str(first.SOPClassUID), str(first.file_meta.TransferSyntaxUID))
    outcomes: list[Outcome] = []
    assoc = _associate(port, ae, batch.instances[0].ae, connect_s)
    reason = "association not established"
    if assoc.is_established:
        _keep_responses(assoc)
        for item, ds in zip(batch.instances, datasets, strict=True):
            began = time.monotonic()
            try:
                rsp = assoc.send_c_store(ds)
            except (RuntimeError, OSError) as exc:  # the association is gone
                reason = f"no response: {type(exc).__name__}"
                break
            if not rsp or "Status" not in rsp:
                reason = "no response"
                break
            code = int(rsp.Status)
            sent = (began, time.monotonic())
            status = f"0x{code:04X}"
            outcomes.append(Outcome(item, True, _acked_code(code), status, "pynetdicom", sent))
        if assoc.is_established:
            assoc.release()
    _close_socket(assoc)
    ae.shutdown()
    for item in batch.instances[len(outcomes) :]:
        outcomes.append(Outcome(item, False, False, reason, "pynetdicom"))
    return outcomes


def send(port: int, batch: Batch, folder: Path, connect_s: float = 20.0) -> list[Outcome]:
    """Send ``batch`` with the sender it names."""
    if batch.sender == "dcmtk":
        return send_dcmtk(port, batch, folder, connect_s)
    return send_pynetdicom(port, batch, connect_s)
