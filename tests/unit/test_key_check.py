"""The processors' check of record keys against the bus's key secret (roles/keycheck.py)."""

from __future__ import annotations

import hmac
import logging
from typing import Any

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


def test_each_patients_key_is_computed_once_and_the_memo_starts_over_when_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[bytes] = []
    real_new = hmac.new

    def counting_new(key: bytes, msg: bytes, digestmod: Any) -> hmac.HMAC:
        calls.append(msg)
        return real_new(key, msg, digestmod)

    monkeypatch.setattr("streams.events.keys.hmac.new", counting_new)
    monkeypatch.setattr("streams.events.keys.MEMO_SIZE", 2)
    keys = RecordKeys(b"the bus's key secret, 32 bytes..")
    # OURS: the same secret, its own memo
    want = {patient: OURS("CT", patient) for patient in ("PAT-1", "PAT-2", "PAT-9")}
    reference = want["PAT-9"]
    check = KeyCheck(keys)
    before = metrics.sample_value("dicom_adapter_instances_foreign_key_total", {"source": "c-1"})
    calls.clear()
    for offset in range(3):  # one patient's run of instances: one HMAC
        check(record(reference, "c-1", offset))
    assert calls == [b"PAT-9"]
    check(record("CT/PAT-9", "c-1", 3))  # a foreign key is still caught from the memo
    after = metrics.sample_value("dicom_adapter_instances_foreign_key_total", {"source": "c-1"})
    assert after - before == 1
    assert keys("CT", "PAT-1") == want["PAT-1"]  # the second pair: memo full
    calls.clear()
    assert keys("CT", "PAT-2") == want["PAT-2"]  # the third starts it over
    assert keys("CT", "PAT-9") == reference  # forgotten: computed again
    assert calls == [b"PAT-2", b"PAT-9"]
    assert keys == RecordKeys(b"the bus's key secret, 32 bytes..")  # the memo is no part of it
    assert "PAT" not in repr(keys)
