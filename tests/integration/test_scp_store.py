"""C-STORE end to end: files on disk, events on Kafka, statuses for every failure mode."""

from __future__ import annotations

import asyncio
import collections
import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pydicom
import pytest
from helpers import scu
from helpers.dicom import make_ct, storescu, write_instances
from helpers.kafka import read_events
from helpers.scp import scp_config
from pydicom.uid import generate_uid

from streams.events import RecordKeys, schema_path, to_dict
from streams.scp import ScpService
from streams.storage import uri_to_path

pytestmark = [pytest.mark.kafka, pytest.mark.dicom]

OUT_OF_RESOURCES = 0xA700


def _dcm_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.dcm") if ".outbox" not in p.parts)


@pytest.mark.slow
async def test_ten_concurrent_associations_of_fifty_instances(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    prefix = unique_name("scp")
    storage = tmp_path / "storage"
    config = scp_config(storage, kafka_bootstrap, prefix, max_associations=10)
    batches = []
    for n in range(10):
        study, series = generate_uid(), generate_uid()
        datasets = [
            make_ct(patient_id=f"P{n}", study_uid=study, series_uid=series, instance_number=i)
            for i in range(50)
        ]
        batches.append(write_instances(tmp_path / f"in{n}", datasets))
    async with ScpService(config) as scp:
        with ThreadPoolExecutor(10) as pool:
            loop = asyncio.get_running_loop()
            procs = await asyncio.gather(
                *(
                    loop.run_in_executor(pool, lambda f=files: storescu(scp.port, f, aec="CT-AE"))
                    for files in batches
                )
            )
        for proc in procs:
            assert proc.returncode == 0, proc.stderr
            assert "E:" not in proc.stderr
        events = await read_events(kafka_bootstrap, f"{prefix}.instances", at_least=500)
    assert len(_dcm_files(storage)) == 500
    sops = collections.Counter(env.data.sop_instance_uid for _, env in events)
    sent = {p.stem for files in batches for p in files}
    assert set(sops) == sent and set(sops.values()) == {1}
    keys = collections.Counter(key for key, _ in events)
    assert keys == {RecordKeys()("CT-AE", f"P{n}"): 50 for n in range(10)}
    assert len({env.data.association_id for _, env in events}) == 10


async def test_malicious_uids_stay_inside_storage(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    prefix = unique_name("scp")
    root = tmp_path / "a" / "b" / "c"
    storage = root / "storage"
    config = scp_config(storage, kafka_bootstrap, prefix)
    async with ScpService(config) as scp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about every bad UID it handles
            hostile = [
                make_ct(sop_uid="../../x", study_uid="../../../../etc", series_uid="/abs/path"),
                make_ct(sop_uid="1.2/../../../3"),
                make_ct(sop_uid=".."),
                make_ct(sop_uid="1.2.3", study_uid="..", series_uid="."),
            ]
            result, statuses = await asyncio.to_thread(scu.store, scp.port, hostile, aec="CT-AE")
        # A SOP Instance UID that is not a UID is refused (0x0117 Invalid SOP Instance,
        # PS3.7 Annex C; see test_scp_bad_uids.py); odd Study/Series UIDs are stored.
        assert result.established and statuses == [0x0117, 0x0117, 0x0117, 0]
        events = await read_events(kafka_bootstrap, f"{prefix}.instances", at_least=1)
    everything = [
        p for p in await asyncio.to_thread(lambda: list(tmp_path.rglob("*"))) if p.is_file()
    ]
    outside = [p for p in everything if not p.is_relative_to(storage)]
    assert outside == []
    stored = _dcm_files(storage)
    assert len(stored) == 1
    for p in stored:
        assert p.relative_to(storage).parts[0] == "CT-AE"
        assert len(p.relative_to(storage).parts) == 4
    assert [env.data.sop_instance_uid for _, env in events] == ["1.2.3"]
    for _, env in events:
        assert uri_to_path(env.data.uri) in stored


async def test_watermark_exceeded_answers_out_of_resources_and_stores_nothing(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    prefix = unique_name("scp")
    storage = tmp_path / "storage"
    # Reserve more than any disk has: the check must fail.
    config = scp_config(storage, kafka_bootstrap, prefix, reserve_space_gb=10**9)
    files = write_instances(tmp_path / "in", [make_ct(instance_number=i) for i in range(3)])
    async with ScpService(config) as scp:
        result, statuses = await asyncio.to_thread(
            scu.store, scp.port, [make_ct(), make_ct()], aec="CT-AE"
        )
        assert result.established and statuses == [OUT_OF_RESOURCES, OUT_OF_RESOURCES]
        proc = await asyncio.to_thread(storescu, scp.port, files, aec="CT-AE", extra=["-v"])
        assert proc.returncode != 0
        assert "Refused: OutOfResources" in proc.stderr
        events = await read_events(kafka_bootstrap, f"{prefix}.instances", at_least=0, timeout_s=5)
    assert events == []
    assert _dcm_files(storage) == []


async def test_write_failure_answers_out_of_resources(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    prefix = unique_name("scp")
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "CT-AE").write_bytes(b"a file where the AE folder should be")
    config = scp_config(storage, kafka_bootstrap, prefix)
    async with ScpService(config) as scp:
        _, statuses = await asyncio.to_thread(scu.store, scp.port, [make_ct()], aec="CT-AE")
        assert statuses == [OUT_OF_RESOURCES]
        events = await read_events(kafka_bootstrap, f"{prefix}.instances", at_least=0, timeout_s=5)
    assert events == []


@pytest.mark.parametrize("overwrite", [True, False])
async def test_same_sop_instance_twice(
    tmp_path: Path, kafka_bootstrap: str, unique_name, overwrite: bool
) -> None:
    prefix = unique_name("scp")
    storage = tmp_path / "storage"
    config = scp_config(
        storage,
        kafka_bootstrap,
        prefix,
        ae_extra={"CT-AE": {"overwrite_same_instance": overwrite}},
    )
    first = make_ct(accession="FIRST")
    second = make_ct(
        accession="SECOND",
        sop_uid=first.SOPInstanceUID,
        study_uid=first.StudyInstanceUID,
        series_uid=first.SeriesInstanceUID,
    )
    async with ScpService(config) as scp:
        _, statuses = await asyncio.to_thread(scu.store, scp.port, [first], aec="CT-AE")
        _, statuses2 = await asyncio.to_thread(scu.store, scp.port, [second], aec="CT-AE")
        assert statuses == statuses2 == [0]
        events = await read_events(
            kafka_bootstrap, f"{prefix}.instances", at_least=2 if overwrite else 1, timeout_s=10
        )
    (stored,) = _dcm_files(storage)
    if overwrite:
        assert len(events) == 2 and events[0][1].id != events[1][1].id
        assert {env.data.uri for _, env in events} == {str(stored)}
        assert pydicom.dcmread(stored).AccessionNumber == "SECOND"
    else:
        assert len(events) == 1
        assert pydicom.dcmread(stored).AccessionNumber == "FIRST"


async def test_event_fields_extra_tags_and_missing_identifiers(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    prefix = unique_name("scp")
    storage = tmp_path / "storage"
    config = scp_config(storage, kafka_bootstrap, prefix, ae_titles=("CT-AE", "MR-AE"))
    full = make_ct(patient_id="PID-7", accession="ACC-7")
    bare = make_ct()
    for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"):
        delattr(bare, keyword)

    def clock() -> int:  # the SCP's only clock (its heartbeat reads it too)
        return 1_000

    async with ScpService(
        config, ae_tags={"CT-AE": ("00080050", "(0008,0060)", "0010,0030")}, clock=clock
    ) as scp:
        _, statuses = await asyncio.to_thread(
            scu.store, scp.port, [full, bare], aec="CT-AE", aet="MODALITY"
        )
        assert statuses == [0, 0]
        _, statuses = await asyncio.to_thread(scu.store, scp.port, [full], aec="MR-AE")
        assert statuses == [0]
        events = await read_events(kafka_bootstrap, f"{prefix}.instances", at_least=3)
    schema = json.loads(schema_path("instance.received").read_text())
    for _, env in events:
        jsonschema.validate(to_dict(env), schema)
    by_ae = {(env.data.called_ae, env.data.sop_instance_uid): (key, env) for key, env in events}
    key, env = by_ae[("CT-AE", full.SOPInstanceUID)]
    data = env.data
    assert key == RecordKeys()("CT-AE", "PID-7")
    assert env.time == data.received_at == 1_000 and env.source == "test-adapter"
    assert data.calling_ae == "MODALITY" and data.calling_host == "127.0.0.1"
    assert data.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert data.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert (data.patient_id, data.study_instance_uid, data.series_instance_uid) == (
        "PID-7",
        full.StudyInstanceUID,
        full.SeriesInstanceUID,
    )
    assert dict(data.tags) == {"00080050": "ACC-7", "00080060": "CT"}  # birth date absent
    path = uri_to_path(data.uri)
    assert path == storage / "CT-AE" / full.StudyInstanceUID / full.SeriesInstanceUID / (
        f"{full.SOPInstanceUID}.dcm"
    )
    assert data.size == path.stat().st_size
    meta = pydicom.dcmread(path).file_meta
    assert meta.SourceApplicationEntityTitle == "MODALITY"
    assert meta.MediaStorageSOPInstanceUID == full.SOPInstanceUID
    # An instance without Patient/Study/Series is still stored and published.
    key, env = by_ae[("CT-AE", bare.SOPInstanceUID)]
    assert key == RecordKeys()("CT-AE", "")
    assert (env.data.patient_id, env.data.study_instance_uid, env.data.series_instance_uid) == (
        "",
        "",
        "",
    )
    assert uri_to_path(env.data.uri).parent == storage / "CT-AE" / "_unknown" / "_unknown"
    assert env.data.association_id == data.association_id
    # An AE whose processor asked for nothing gets no extra tags.
    _, env = by_ae[("MR-AE", full.SOPInstanceUID)]
    assert dict(env.data.tags) == {} and env.data.association_id != data.association_id


async def test_ignored_sop_class_is_acknowledged_not_stored(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    prefix = unique_name("scp")
    storage = tmp_path / "storage"
    config = scp_config(
        storage,
        kafka_bootstrap,
        prefix,
        ae_extra={"CT-AE": {"ignored_sop_classes": ["1.2.840.10008.5.1.4.1.1.2"]}},
    )
    async with ScpService(config) as scp:
        _, statuses = await asyncio.to_thread(scu.store, scp.port, [make_ct()], aec="CT-AE")
        assert statuses == [0]
        events = await read_events(kafka_bootstrap, f"{prefix}.instances", at_least=0, timeout_s=5)
    assert events == [] and _dcm_files(storage) == []
