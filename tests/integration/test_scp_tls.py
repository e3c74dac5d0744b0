"""DICOM TLS on the SCP (PS3.15 Annex B), seen by DCMTK built with OpenSSL.

One SCP with a plain and a TLS listener, client certificates required (mutual TLS):
``storescu +tls`` stores many instances through the fast receive path and each event
records the client certificate's subject; ``echoscu +tls`` works; a plain association
on the TLS port fails, as do a client without a certificate and one whose certificate
comes from another CA; a silent connection does not stop the listener.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from helpers.dicom import echoscu, make_ct, storescu, write_instances
from helpers.pki import Pki, make_pki
from helpers.scp import scp_config

from streams.events import InstanceReceived, is_hashed_key
from streams.kafka import read_topic
from streams.scp import ScpService

pytestmark = [pytest.mark.kafka, pytest.mark.dicom]

AE = "CT-AE"
COUNT = 40


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_args(pki: Pki, *, client: str = "client") -> list[str]:
    """storescu/echoscu options: TLS with our client certificate, the CA to trust."""
    issued = {"client": pki.client, "stranger": pki.stranger}[client]
    return ["+tls", str(issued.key), str(issued.cert), "+cf", str(pki.ca)]


def mtls_config(tmp_path: Path, bootstrap: str, prefix: str, pki: Pki, **tls: object):
    settings = {
        "port": 0,
        "cert": str(pki.server.cert),
        "key": str(pki.server.key),
        "ca": str(pki.ca),
        **tls,
    }
    return scp_config(tmp_path, bootstrap, prefix, tls=settings)


async def test_storescu_over_tls_stores_and_records_the_client_subject(
    tmp_path: Path, kafka_bootstrap: str, unique_name, pki: Pki
) -> None:
    prefix = unique_name("tls")
    config = mtls_config(tmp_path / "store", kafka_bootstrap, prefix, pki)
    files = write_instances(
        tmp_path / "in", [make_ct(patient_id="PAT-TLS", study_uid="1.2.3.77") for _ in range(COUNT)]
    )
    async with ScpService(config) as scp:
        assert scp.port != scp.tls_port
        done = await asyncio.to_thread(
            storescu, scp.tls_port, files, aec=AE, extra=tls_args(pki), nodelay=False
        )
        assert done.returncode == 0, done.stderr
        echo = await asyncio.to_thread(echoscu, scp.tls_port, aec=AE, extra=tls_args(pki))
        assert echo.returncode == 0, echo.stderr
    records = await read_topic(kafka_bootstrap, config.kafka.instances_topic)
    events = [r.envelope.data for r in records]
    assert len(events) == COUNT
    assert all(isinstance(e, InstanceReceived) for e in events)
    assert {e.peer_certificate_subject for e in events} == {"CN=modality-1"}
    # The key names the AE and a keyed hash, never the Patient ID.
    assert {r.key for r in records} == {records[0].key}
    assert is_hashed_key(records[0].key or "") and "PAT-TLS" not in (records[0].key or "")


async def test_tls_port_refuses_plain_dicom_and_clients_without_a_trusted_certificate(
    tmp_path: Path, kafka_bootstrap: str, unique_name, pki: Pki
) -> None:
    config = mtls_config(tmp_path, kafka_bootstrap, unique_name("tls"), pki)
    files = write_instances(tmp_path / "in", [make_ct()])
    async with ScpService(config) as scp:
        # A connection that never starts its handshake must not hold up the listener.
        with socket.create_connection(("127.0.0.1", scp.tls_port)):
            plain = await asyncio.to_thread(echoscu, scp.tls_port, aec=AE, timeout=20)
            assert plain.returncode != 0
            anonymous = await asyncio.to_thread(
                storescu, scp.tls_port, files, aec=AE, extra=["+tla", "+cf", str(pki.ca)]
            )
            assert anonymous.returncode != 0
            stranger = await asyncio.to_thread(
                storescu, scp.tls_port, files, aec=AE, extra=tls_args(pki, client="stranger")
            )
            assert stranger.returncode != 0
            good = await asyncio.to_thread(echoscu, scp.tls_port, aec=AE, extra=tls_args(pki))
            assert good.returncode == 0, good.stderr
        # The plain listener is unaffected, and its events carry no subject.
        assert (await asyncio.to_thread(storescu, scp.port, files, aec=AE)).returncode == 0
    records = await read_topic(kafka_bootstrap, config.kafka.instances_topic)
    assert [r.envelope.data.peer_certificate_subject for r in records] == [""]


async def test_tls_without_client_certificates_and_tls_only(
    tmp_path: Path, kafka_bootstrap: str, unique_name, pki: Pki
) -> None:
    config = mtls_config(tmp_path, kafka_bootstrap, unique_name("tls"), pki, client_certs="none")
    config = config.model_copy(update={"scp": config.scp.model_copy(update={"port": None})})
    files = write_instances(tmp_path / "in", [make_ct()])
    async with ScpService(config) as scp:
        with pytest.raises(RuntimeError, match="no plain listener"):
            _ = scp.port
        done = await asyncio.to_thread(
            storescu, scp.tls_port, files, aec=AE, extra=["+tla", "+cf", str(pki.ca)]
        )
        assert done.returncode == 0, done.stderr
