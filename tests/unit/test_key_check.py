"""The processors' check of record keys against the bus's key secret (roles/keycheck.py)."""

from __future__ import annotations

import logging

import pytest

from processors.roles.keycheck import KeyCheck
from streams import metrics
from streams.events import RecordKeys, envelope
from streams.kafka import Record
from tests.helpers.instances import make_instance

OURS = RecordKeys(b"the bus's key secret, 32 bytes..")


def record(key: str, source: str, offset: int = 0) -> Record:
    item = make_instance(received_at=1, ae="CT", patient="PAT-9", study="1.2", sop=f"1.2.{offset}")
    return Record("t.instances", 0, offset, key, 1, envelope(item, source=source, time_ms=1))


def test_keys_of_another_secret_are_counted_and_warned_once_per_adapter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    check = KeyCheck(OURS)
    before = metrics.sample_value("dicom_adapter_instances_foreign_key_total", {"source": "scp-x"})
    with caplog.at_level(logging.WARNING):
        check(record(OURS("CT", "PAT-9"), "scp-1"))
        check(record(RecordKeys()("CT", "PAT-9"), "scp-x", 1))  # the lab secret
        check(record("CT/PAT-9", "scp-x", 2))  # a key from before hashing
    after = metrics.sample_value("dicom_adapter_instances_foreign_key_total", {"source": "scp-x"})
    assert after - before == 2
    [warning] = caplog.records
    assert "adapter scp-x" in warning.getMessage() and "t.instances[0]@1" in warning.getMessage()
    assert "PAT-9" not in warning.getMessage()


def test_each_patients_key_is_computed_once_and_the_cache_starts_over_when_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, str]] = []

    def keys(ae: str, patient: str) -> str:
        calls.append((ae, patient))
        return OURS(ae, patient)

    monkeypatch.setattr("processors.roles.keycheck.CACHE_SIZE", 2)
    check = KeyCheck(keys)  # type: ignore[arg-type]
    before = metrics.sample_value("dicom_adapter_instances_foreign_key_total", {"source": "c-1"})
    for offset in range(3):  # one patient's run of instances: one HMAC
        check(record(OURS("CT", "PAT-9"), "c-1", offset))
    assert calls == [("CT", "PAT-9")]
    check(record("CT/PAT-9", "c-1", 3))  # a foreign key is still caught from the cache
    after = metrics.sample_value("dicom_adapter_instances_foreign_key_total", {"source": "c-1"})
    assert after - before == 1
    for patient in ("PAT-1", "PAT-2"):  # the third pair fills the cache: it starts over
        item = make_instance(received_at=1, ae="CT", patient=patient, study="1.2", sop="9")
        check(Record("t", 0, 9, OURS("CT", patient), 1, envelope(item, source="c-1", time_ms=1)))
    check(record(OURS("CT", "PAT-9"), "c-1", 10))
    assert calls.count(("CT", "PAT-9")) == 2
