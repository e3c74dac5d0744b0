"""The C-STORE handler never raises: an unexpected error is 0xC211 and one log line."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from streams.events import Envelope
from streams.scp import CANNOT_UNDERSTAND, SUCCESS, AssociationGate, AssociationPolicy, StoreHandler


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
        assert handler.on_store(event) == CANNOT_UNDERSTAND
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "0xC211" in errors[0].getMessage()
    assert errors[0].exc_info is None  # the traceback only at DEBUG
    assert handler.on_echo(event) == SUCCESS
    assert list(tmp_path.iterdir()) == []
