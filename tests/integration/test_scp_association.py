"""Association rules of the SCP, seen by real peers (DCMTK echoscu, pynetdicom).

Clara reference case 32: unknown called AE → rejected "called AE title not recognized";
with ``reject_unknown_sources`` an unknown calling AE (or a known one from another host)
→ "calling AE title not recognized"; listed sources are accepted. Plus C-ECHO,
pynetdicom's own ``max_associations`` limit, and TCP tuning of accepted sockets.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pydicom
import pytest
from helpers import scu
from helpers.dicom import echoscu, make_ct, storescu, write_instances
from helpers.scp import scp_config
from helpers.waiting import wait_for

from streams.scp import ScpService

pytestmark = [pytest.mark.kafka, pytest.mark.dicom]

SOURCES = [
    {"ae_title": "PACS1", "host": "127.0.0.1"},
    {"ae_title": "PACS2", "host": "127.0.0.1"},
    {"ae_title": "ELSEWHERE", "host": "10.254.254.254"},
    {"ae_title": "ANYHOST"},
]


async def test_c_echo_succeeds_for_a_configured_ae(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    config = scp_config(tmp_path, kafka_bootstrap, unique_name("scp"))
    async with ScpService(config) as scp:
        proc = await asyncio.to_thread(echoscu, scp.port, aec="CT-AE")
        assert proc.returncode == 0, proc.stderr
        result, status = await asyncio.to_thread(scu.echo, scp.port, aec="CT-AE")
        assert result.established and status == 0x0000


async def test_unknown_called_ae_is_rejected(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    config = scp_config(tmp_path, kafka_bootstrap, unique_name("scp"))
    async with ScpService(config) as scp:
        proc = await asyncio.to_thread(echoscu, scp.port, aec="BLABLA")
        assert proc.returncode != 0
        assert "Association Rejected" in proc.stderr
        assert "Rejected Permanent, Source: Service User" in proc.stderr
        assert "Called AE Title Not Recognized" in proc.stderr
        # AE titles are case-sensitive.
        result, _ = await asyncio.to_thread(scu.echo, scp.port, aec="ct-ae")
        assert result.rejected
        assert (result.result, result.source, result.diagnostic) == (0x01, 0x01, 0x07)
        assert "Called AE title not recognised" in result.reason
        # The server is still serving.
        result, status = await asyncio.to_thread(scu.echo, scp.port, aec="CT-AE")
        assert result.established and status == 0


async def test_unknown_sources_rejected_when_required(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    config = scp_config(
        tmp_path,
        kafka_bootstrap,
        unique_name("scp"),
        reject_unknown_sources=True,
        sources=SOURCES,
    )
    async with ScpService(config) as scp:
        proc = await asyncio.to_thread(echoscu, scp.port, aec="CT-AE", aet="UNKNOWNSCU")
        assert proc.returncode != 0
        assert "Calling AE Title Not Recognized" in proc.stderr
        for aet in ("PACS1", "PACS2", "ANYHOST"):
            proc = await asyncio.to_thread(echoscu, scp.port, aec="CT-AE", aet=aet)
            assert proc.returncode == 0, (aet, proc.stderr)
        # Known AE title, wrong host.
        result, _ = await asyncio.to_thread(scu.echo, scp.port, aec="CT-AE", aet="ELSEWHERE")
        assert (result.result, result.source, result.diagnostic) == (0x01, 0x01, 0x03)
        assert "Calling AE title not recognised" in result.reason
        # Known source to an unknown called AE.
        proc = await asyncio.to_thread(echoscu, scp.port, aec="blabla", aet="PACS1")
        assert "Called AE Title Not Recognized" in proc.stderr
        # C-STORE from an unknown source never reaches storage.
        files = write_instances(tmp_path / "in", [make_ct()])
        proc = await asyncio.to_thread(storescu, scp.port, files, aec="CT-AE", aet="UNKNOWN")
        assert proc.returncode != 0 and "Calling AE Title Not Recognized" in proc.stderr
        assert not (tmp_path / "CT-AE").exists()


async def test_unknown_sources_accepted_when_not_required(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    config = scp_config(tmp_path, kafka_bootstrap, unique_name("scp"), sources=SOURCES)
    async with ScpService(config) as scp:
        proc = await asyncio.to_thread(echoscu, scp.port, aec="CT-AE", aet="UNKNOWNSCU")
        assert proc.returncode == 0, proc.stderr


async def test_associations_past_max_are_rejected_local_limit(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    config = scp_config(tmp_path, kafka_bootstrap, unique_name("scp"), max_associations=2)
    async with ScpService(config) as scp:
        opened = []
        for _ in range(2):
            _, assoc, result = await asyncio.to_thread(scu.associate, scp.port, aec="CT-AE")
            assert result.established
            opened.append(assoc)
        _, _, flood = await asyncio.to_thread(scu.associate, scp.port, aec="CT-AE")
        assert flood.rejected
        # rejected-transient, DUL service-provider (presentation), local-limit-exceeded
        assert (flood.result, flood.source, flood.diagnostic) == (0x02, 0x03, 0x02)
        assert "Local limit exceeded" in flood.reason
        for assoc in opened:
            await asyncio.to_thread(assoc.release)
        await asyncio.to_thread(wait_for, lambda: not scp.server.associations())
        result, status = await asyncio.to_thread(scu.echo, scp.port, aec="CT-AE")
        assert result.established and status == 0


async def test_accepted_sockets_have_nodelay_and_quickack_reads(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    config = scp_config(tmp_path, kafka_bootstrap, unique_name("scp"))
    async with ScpService(config) as scp:
        _, assoc, result = await asyncio.to_thread(scu.associate, scp.port, aec="CT-AE")
        assert result.established
        await asyncio.to_thread(wait_for, lambda: bool(scp.server.associations()))
        server_side = scp.server.associations()[0]
        raw = server_side.dul.socket.socket
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert "recv" in vars(server_side.dul.socket)  # our quick-ACK reader is installed
        await asyncio.to_thread(assoc.release)


async def test_storescu_with_nagle_on_still_delivers(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    """A stock storescu (no TCP_NODELAY in its environment), as real modalities behave."""
    config = scp_config(tmp_path / "storage", kafka_bootstrap, unique_name("scp"))
    files = write_instances(tmp_path / "in", [make_ct(instance_number=i) for i in range(20)])
    async with ScpService(config) as scp:
        proc = await asyncio.to_thread(storescu, scp.port, files, aec="CT-AE", nodelay=False)
        assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "storage" / "CT-AE").rglob("*.dcm"))) == 20


CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT, EXPLICIT, BIG = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
JPEG_BASELINE, J2K = "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90"


@pytest.mark.parametrize(
    "proposed",
    [
        [EXPLICIT, IMPLICIT],
        [IMPLICIT, EXPLICIT],
        [BIG, IMPLICIT, EXPLICIT],
        [JPEG_BASELINE, EXPLICIT, IMPLICIT],
        [J2K, JPEG_BASELINE],
        ["1.2.3.4.5.6.7.8.999", EXPLICIT],  # an unknown (private) syntax is skipped
    ],
)
async def test_the_first_proposed_transfer_syntax_is_accepted(
    tmp_path: Path, kafka_bootstrap: str, unique_name, proposed: list[str]
) -> None:
    config = scp_config(tmp_path, kafka_bootstrap, unique_name("scp"))
    async with ScpService(config) as scp:
        _, assoc, result = await asyncio.to_thread(
            scu.associate, scp.port, aec="CT-AE", contexts=[(CT, proposed)]
        )
        assert result.established
        (accepted,) = assoc.accepted_contexts
        expected = proposed[1] if proposed[0].startswith("1.2.3.4.5") else proposed[0]
        assert accepted.transfer_syntax[0] == expected
        await asyncio.to_thread(assoc.release)


async def test_combined_storescu_proposal_is_stored_without_transcoding(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    """storescu +C proposes [explicit LE, explicit BE, implicit LE] in one context."""
    storage = tmp_path / "storage"
    config = scp_config(storage, kafka_bootstrap, unique_name("scp"))
    files = write_instances(tmp_path / "in", [make_ct()])
    async with ScpService(config) as scp:
        proc = await asyncio.to_thread(storescu, scp.port, files, aec="CT-AE", extra=["+C", "-R"])
        assert proc.returncode == 0, proc.stderr
    (stored,) = storage.joinpath("CT-AE").rglob("*.dcm")
    assert pydicom.dcmread(stored).file_meta.TransferSyntaxUID == EXPLICIT
