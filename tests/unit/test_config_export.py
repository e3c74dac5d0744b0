"""The ``export:`` section: destinations, retries, batch size; one clear line per problem."""

from __future__ import annotations

from typing import Any

import pytest

from streams.config import (
    AdapterConfig,
    DicomDestination,
    DicomWebDestination,
    ExportConfig,
    build_config,
    load_config,
)
from streams.config.loader import ConfigSource
from streams.errors import ConfigError

PACS = {"kind": "dicom", "name": "pacs", "ae_title": "PACS", "host": "pacs.local", "port": 104}
WEB = {"kind": "dicomweb", "name": "web", "url": "https://archive/dicom-web"}


def problems(export: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build_config(ConfigSource(data={"export": export}))
    return info.value.problems


def one_problem(export: dict[str, Any]) -> str:
    lines = problems(export)
    assert len(lines) == 1, lines
    return lines[0]


def test_defaults() -> None:
    export = AdapterConfig().export
    assert export.destinations == ()
    assert (export.max_attempts, export.backoff_initial_s, export.backoff_max_s) == (5, 1, 60)
    assert export.batch_size == 100


def test_both_kinds_parse_to_their_own_type() -> None:
    auth = {"kind": "basic", "username": "u", "password": "p"}
    config = build_config(
        ConfigSource(data={"export": {"destinations": [PACS, {**WEB, "auth": auth}]}})
    )
    pacs, web = config.export.destinations
    assert isinstance(pacs, DicomDestination) and isinstance(web, DicomWebDestination)
    assert (pacs.ae_title, pacs.host, pacs.port, pacs.calling_ae, pacs.timeout_s) == (
        "PACS",
        "pacs.local",
        104,
        None,
        30,
    )
    assert web.auth.kind == "basic" and web.auth.password is not None
    assert web.auth.password.get_secret_value() == "p"
    assert web.auth.username == "u"
    assert config.export.destination("web") is web
    assert config.export.destination("WEB") is None


def test_calling_ae_defaults_to_the_adapters_own_ae_title() -> None:
    pacs = DicomDestination.model_validate(PACS)
    assert AdapterConfig().calling_ae(pacs) == "DICOMADAPTER"
    with_scp = AdapterConfig.model_validate({"scp": {"ae_titles": [{"ae_title": "CLARA-CT"}]}})
    assert with_scp.calling_ae(pacs) == "CLARA-CT"
    own = DicomDestination.model_validate({**PACS, "calling_ae": "EXPORTER"})
    assert with_scp.calling_ae(own) == "EXPORTER"


def test_secrets_are_masked_in_repr_and_never_echoed() -> None:
    web = {
        **WEB,
        "url": "https://svc:pw-in-url@archive/dicom-web?token=qq",
        "auth": {"kind": "bearer", "token": "tok-secret"},
    }
    config = ExportConfig.model_validate({"destinations": [web]})
    text = repr(config) + str(config) + repr(AdapterConfig(export=config))
    for secret in ("pw-in-url", "qq", "tok-secret"):
        assert secret not in text
    line = one_problem(
        {"destinations": [{**WEB, "auth": {"kind": "basic", "username": "u", "password": 12}}]}
    )
    assert line == "export.destinations[0] (web): auth.password: '***' is not text; quote it"


@pytest.mark.parametrize(
    ("destination", "line"),
    [
        ({**PACS, "kind": "ftp"}, "(pacs): kind 'ftp' is not one of 'dicom' or"),
        ({k: v for k, v in PACS.items() if k != "kind"}, "(pacs): has no kind; add one of"),
        ({**PACS, "port": 0}, "(pacs): port: 0 is too small; use at least 1"),
        ({**PACS, "port": "x"}, "(pacs): port: 'x' is not a whole number"),
        ({**PACS, "ae_title": "A" * 17}, "(pacs): ae_title: 'AAAAAAAAAAAAAAAAA' is 17 characters"),
        ({**PACS, "calling_ae": "A\\B"}, "(pacs): calling_ae: 'A\\\\B' contains '\\\\'"),
        ({**PACS, "timeout_s": 0}, "(pacs): timeout_s: 0 is too small; use more than 0"),
        ({**PACS, "name": "a b"}, "(a b): name: 'a b' is not a valid destination name"),
        ({**PACS, "url": "http://x"}, "(pacs): url: unknown key; allowed here: kind, name, ae"),
        ({**WEB, "url": "ftp://u:pw@h/x"}, "(web): url: 'ftp://u:***@h/x' is not an http(s) URL"),
        ({**WEB, "port": 1}, "(web): port: unknown key; allowed here: kind, name, url, auth"),
        ({**WEB, "auth": {"kind": "basic"}}, "(web): auth.username: is required when kind is"),
        ({**WEB, "auth": {"kind": "bearer"}}, "(web): auth.token: is required when kind is bear"),
        ({**WEB, "auth": {"token": "t"}}, "(web): auth.token: is only used when kind is bearer"),
        ({**WEB, "auth": {"kind": "oauth"}}, "(web): auth.kind: 'oauth' is not one of"),
    ],
)
def test_bad_destinations_name_the_entry_the_key_and_the_fix(
    destination: dict[str, Any], line: str
) -> None:
    found = problems({"destinations": [destination]})
    assert any(p.startswith("export.destinations[0] " + line) for p in found), found
    assert not any("Input should" in p or "pydantic" in p for p in found)


def test_names_are_unique_across_kinds() -> None:
    line = one_problem({"destinations": [PACS, {**WEB, "name": "pacs"}]})
    assert line.startswith(
        "export.destinations[1] (pacs): name: 'pacs' is already used by export.destinations[0]"
    )


@pytest.mark.parametrize(
    ("export", "line"),
    [
        ({"max_attempts": 0}, "export.max_attempts: 0 is too small; use at least 1"),
        ({"batch_size": 0}, "export.batch_size: 0 is too small; use at least 1"),
        ({"batch_size": 10001}, "export.batch_size: 10001 is too large; use at most 10000"),
        ({"backoff_initial_s": 0}, "export.backoff_initial_s: 0 is too small; use more than 0"),
        (
            {"backoff_initial_s": 9, "backoff_max_s": 3},
            "export.backoff_max_s: 3 is below backoff_initial_s (9); make it at least that",
        ),
        ({"destinations": {"x": 1}}, "export.destinations: expected a list, got a mapping"),
        ({"destination": []}, "export.destination: unknown key (did you mean 'destinations'?)"),
    ],
)
def test_retry_and_batch_settings(export: dict[str, Any], line: str) -> None:
    assert one_problem(export).startswith(line)


def test_every_problem_at_once() -> None:
    bad = {
        "destinations": [{**PACS, "port": -1, "host": ""}, {**WEB, "url": "x"}, PACS],
        "batch_size": 0,
    }
    assert len(problems(bad)) == 5  # port, host, url, duplicate name, batch_size


def test_secrets_from_the_environment(tmp_path, monkeypatch) -> None:
    path = tmp_path / "adapter.yaml"
    path.write_text(
        "export:\n  destinations:\n"
        "    - {kind: dicomweb, name: web, url: 'http://h/dicom-web', auth: {kind: bearer, "
        "token: placeholder}}\n"
    )
    monkeypatch.setenv("DICOM_ADAPTER_EXPORT__DESTINATIONS__0__AUTH__TOKEN", "from-env")
    (web,) = load_config(path).export.destinations
    assert isinstance(web, DicomWebDestination) and web.auth.token is not None
    assert web.auth.token.get_secret_value() == "from-env"
