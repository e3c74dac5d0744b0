"""Exports over DICOM TLS (PS3.15 Annex B.1) to DCMTK's storescp with mutual TLS.

The destination config (``export.destinations[].tls``) becomes the SCU's TLS context;
storescp requires our client certificate. A destination whose CA does not match the
peer's certificate fails to connect, with one outcome per instance and nothing stored.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.dicom import make_ct, write_instances
from helpers.peers import StoreScp
from helpers.pki import make_pki

from processors.export.senders import make_sender
from streams.config import AdapterConfig
from streams.scu import CStoreSender

pytestmark = [pytest.mark.dicom]


def sender_for(port: int, tls: dict[str, object]) -> CStoreSender:
    destination = {"kind": "dicom", "name": "pacs", "ae_title": "STORESCP",
                   "host": "localhost", "port": port, "timeout_s": 10, "tls": tls}  # fmt: skip
    config = AdapterConfig.model_validate({"export": {"destinations": [destination]}})
    sender = make_sender(config.export.destinations[0], calling_ae="EXPORTER")
    assert isinstance(sender, CStoreSender)
    return sender


def test_export_over_mutual_tls_to_storescp(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    files = write_instances(tmp_path / "in", [make_ct(instance_number=i) for i in range(3)])
    server = ["+tls", str(pki.server.key), str(pki.server.cert), "+cf", str(pki.ca)]
    with StoreScp(tmp_path / "out", extra=server) as scp:
        mine = {"ca": str(pki.ca), "cert": str(pki.client.cert), "key": str(pki.client.key)}
        outcomes = sender_for(scp.port, mine).send_batch(files)
        assert [o.kind for o in outcomes] == ["sent"] * 3, outcomes
        assert len(scp.stored()) == 3
        wrong_ca = {
            "ca": str(pki.other_ca),
            "cert": str(pki.client.cert),
            "key": str(pki.client.key),
        }
        refused = sender_for(scp.port, wrong_ca).send_batch(files)
        assert {(o.kind, o.reason) for o in refused} == {("failed", "connect_failed")}, refused
        assert "TLS handshake failed" in refused[0].error
        no_cert = sender_for(scp.port, {"ca": str(pki.ca)}).send_batch(files)
        assert {o.kind for o in no_cert} == {"failed"}, no_cert
        assert len(scp.stored()) == 3
