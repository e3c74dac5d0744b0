"""``--log-format json|text``: what a log line carries (issue 6)."""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator

import orjson
import pytest

from processors import logs
from processors.cli import build_parser
from processors.logs import JsonFormatter, configure_logging, set_static_context

NOISY = ("aiokafka", "pynetdicom", "kafka")


@pytest.fixture
def root_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """configure_logging changes process-wide state; put it back after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY}
    monkeypatch.setattr(logs, "_handler", None)
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, old in noisy.items():
        logging.getLogger(name).setLevel(old)


def one_line(stream: io.StringIO) -> str:
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_json_line_carries_static_and_per_record_context() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter({"adapter_id": "scp-1", "role": "scp"}))
    log = logging.getLogger("test.logs.json")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        log.info(
            "stored %d instances",
            3,
            extra={"association_id": "assoc-7", "job_id": "job-42"},
        )
    finally:
        log.removeHandler(handler)
    line = orjson.loads(one_line(stream))
    assert line["message"] == "stored 3 instances"
    assert line["level"] == "INFO"
    assert line["logger"] == "test.logs.json"
    assert line["adapter_id"] == "scp-1"
    assert line["role"] == "scp"
    assert line["association_id"] == "assoc-7"
    assert line["job_id"] == "job-42"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])


def test_a_record_can_override_the_static_context() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "m", None, None)
    record.role = "submit"
    line = orjson.loads(JsonFormatter({"role": "run", "adapter_id": "a"}).format(record))
    assert (line["role"], line["adapter_id"]) == ("submit", "a")
    assert "job_id" not in line  # absent context is left out, not null


def test_json_line_keeps_the_traceback_in_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    text = JsonFormatter().format(record)
    assert "\n" not in text
    assert "ValueError: boom" in orjson.loads(text)["exc"]


def test_configure_logging_json_to_stderr(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(level="INFO", fmt="json", adapter_id="processor")
    set_static_context(role="process")
    logging.getLogger("test.logs.cli").info("group closed", extra={"job_id": "j-1"})
    logging.getLogger("test.logs.cli").debug("not shown at INFO")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    line = orjson.loads(lines[0])
    assert line["adapter_id"] == "processor"
    assert line["role"] == "process"
    assert line["job_id"] == "j-1"
    assert line["message"] == "group closed"


def test_configure_logging_text(root_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="WARNING", fmt="text")
    set_static_context(role="scp")  # ignored in text mode
    logging.getLogger("test.logs.text").warning("disk at %d%%", 91, extra={"job_id": "j"})
    logging.getLogger("test.logs.text").info("not shown at WARNING")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING test\.logs\.text: disk at 91%", lines[0]
    ), lines[0]


def test_configure_logging_twice_keeps_one_handler(root_logging: None) -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    configure_logging(fmt="json")
    configure_logging(fmt="text")
    assert len(root.handlers) == before + 1


def test_the_cli_offers_both_formats() -> None:
    parser = build_parser()
    assert parser.parse_args(["--log-format", "json", "config", "check", "x"]).log_format == "json"
    assert parser.parse_args(["config", "check", "x"]).log_format == "text"


def test_third_party_debug_records_with_event_payloads_are_dropped() -> None:
    import logging

    from processors.logs import NoPatientData

    keep = NoPatientData()

    def record(name: str, msg: str, level: int = logging.DEBUG) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, msg, (), None)

    value = b'{"data":{"patient_id":"PAT-1"}}'
    sending = record("aiokafka.producer.producer", "Sending (key=%s value=%s) to %s")
    sending.args = (b"AE/abc", value, "tp")
    assert not keep.filter(sending)
    assert not keep.filter(record("aiokafka.conn", "Request to %s %s: %s"))
    assert keep.filter(record("aiokafka.consumer.group_coordinator", "Joined group"))
    assert keep.filter(record("aiokafka.conn", "Unable connect", logging.ERROR))
    assert keep.filter(record("streams.scp", "stored"))
    try:
        raise OSError("certificate verify failed")
    except OSError:
        import sys

        failed = record("pynetdicom.transport", "TLS failed", logging.ERROR)
        failed.exc_info = sys.exc_info()
    assert keep.filter(failed) and failed.exc_info is None
