"""What a configuration leaves open and what stops a start (streams/config/exposure.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from processors.cli import main
from processors.roles.shell import report_exposures
from streams.config import AdapterConfig
from streams.config.exposure import exposures, is_loopback, refusals

SECRET = "bus-key-secret-0123456789abcdef"


def config(**data: object) -> AdapterConfig:
    return AdapterConfig.model_validate(data)


def messages(cfg: AdapterConfig) -> str:
    return "\n".join(str(e) for e in exposures(cfg))


@pytest.mark.parametrize(
    ("host", "local"),
    [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("kafka", False), ("10.0.0.5", False), ("0.0.0.0", False)],
)  # fmt: skip
def test_loopback(host: str, local: bool) -> None:
    assert is_loopback(host) is local


def test_defaults_start_and_list_what_is_open() -> None:
    cfg = config()  # the embedded broker on loopback, the quick start
    assert refusals(cfg) == []
    text = messages(cfg)
    assert "DICOM without TLS on 0.0.0.0:11112" in text
    assert "any calling AE title may store" in text
    assert "not encrypted" in text and "lab key secret" in text
    assert "HTTP" not in text  # loopback, and the API refuses every call


def test_a_bus_on_the_network_needs_tls_and_a_key_secret() -> None:
    cfg = config(kafka={"bootstrap_servers": "kafka:9092"})
    problems = refusals(cfg)
    assert len(problems) == 2, problems
    assert all(p.startswith("security: ") and "security.insecure: true" in p for p in problems)
    assert "kafka.security.protocol: SASL_SSL" in problems[0]
    assert "kafka.key_secret" in problems[1]
    lab = config(kafka={"bootstrap_servers": "kafka:9092"}, security={"insecure": True})
    assert refusals(lab) == []


def test_tokens_over_plain_http_on_the_network_are_refused(tmp_path: Path) -> None:
    http = {"host": "0.0.0.0", "auth": {"tokens": [SECRET]}}
    assert any("HTTP on 0.0.0.0:8080 is not encrypted" in p for p in refusals(config(http=http)))
    # Probes only (no credentials): listed, not refused.
    assert refusals(config(http={"host": "0.0.0.0"})) == []


def test_a_secured_deployment_has_nothing_refused(tmp_path: Path) -> None:
    from helpers.pki import make_pki

    pki = make_pki(tmp_path)
    tls = {"cert": str(pki.server.cert), "key": str(pki.server.key), "ca": str(pki.ca)}
    cfg = config(
        kafka={
            "bootstrap_servers": "kafka-1.hospital:9093,kafka-2.hospital:9093",
            "key_secret": SECRET,
            "security": {
                "protocol": "sasl_ssl",
                "username": "scp",
                "password": "pw",
                "ca": str(pki.ca),
            },
        },
        scp={
            "port": None,
            "tls": tls,
            "reject_unknown_sources": True,
            "sources": [{"ae_title": "CT1"}],
        },
        http={"host": "0.0.0.0", "tls": tls, "auth": {"tokens": SECRET}},
    )
    assert refusals(cfg) == [] and exposures(cfg) == []
    assert SECRET not in repr(cfg) and "'pw'" not in repr(cfg)


def test_the_lab_opt_out_is_a_loud_warning(caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(kafka={"bootstrap_servers": "kafka:9092"}, security={"insecure": True})
    with caplog.at_level(logging.INFO):
        report_exposures(cfg)
    [record] = caplog.records
    assert record.levelno == logging.WARNING and record.getMessage().startswith("INSECURE")
    assert "Kafka traffic to kafka:9092 is not encrypted" in record.getMessage()


def test_a_role_refuses_with_one_line_per_problem_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    file = tmp_path / "adapter.yaml"
    file.write_text(
        f"storage: {tmp_path}\nscp:\n  ae_titles:\n"
        "    - {ae_title: CT, processorSettings: {pipeline-a: P}}\n"
    )
    assert main(["scp", "--config", str(file), "--kafka", "kafka.invalid:9092"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("dicom-adapter: error: ") for line in err[:1])
    assert main(["config", "check", str(file)]) == 0  # no address in the file: embedded
    monkeypatch.setenv("DICOM_ADAPTER_KAFKA__BOOTSTRAP_SERVERS", "kafka.invalid:9092")
    capsys.readouterr()
    assert main(["config", "check", str(file)]) == 2
    assert capsys.readouterr().err.count("config: security: ") == 2
