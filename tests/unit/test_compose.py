"""compose.yaml and the Dockerfile, checked against the real CLI and config schema.

No Docker engine runs here (issue 6), so this is what keeps the deployment honest: every
service's command must parse with ``dicom-adapter``'s own parser, every
``DICOM_ADAPTER_*`` variable must land on a real config key, and every ``--config`` must
be a file the service mounts from this repository.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from processors.cli import build_parser
from processors.config_check import check_config
from streams.config import ENV_PREFIX, AdapterConfig, load_config
from streams.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
PROGRAM = "dicom-adapter"
ROLES = ("scp", "process", "submit", "export", "run")


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "compose.yaml must be a mapping"
    return data


COMPOSE_DATA = load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE_DATA["services"]
# Our services are the ones built from this repository's Dockerfile.
ADAPTERS = sorted(name for name, svc in SERVICES.items() if "build" in svc)


def argv(service: dict[str, Any]) -> list[str]:
    """The CLI arguments a service runs with (the image's ENTRYPOINT is dicom-adapter)."""
    command = service.get("command")
    assert isinstance(command, list), "use the exec form (a list) so no shell parses it"
    assert all(isinstance(a, str) for a in command), f"every argument must be text: {command}"
    return command[1:] if command and command[0] == PROGRAM else list(command)


def environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment as the process sees it (compose accepts both forms)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    for name, value in env.items():
        assert not isinstance(value, bool), f"{name}: quote booleans, compose wants text"
    return {name: "" if value is None else str(value) for name, value in env.items()}


def bind_mounts(service: dict[str, Any]) -> dict[PurePosixPath, tuple[Path, bool]]:
    """Container path -> (repository path, read-only) of every bind mount."""
    mounts: dict[PurePosixPath, tuple[Path, bool]] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                target = PurePosixPath(volume["target"])
                mounts[target] = (REPO / volume["source"], bool(volume.get("read_only")))
            continue
        source, target, *mode = volume.split(":")
        if source.startswith((".", "/")):
            mounts[PurePosixPath(target)] = (REPO / source, "ro" in ",".join(mode).split(","))
    return mounts


def named_volumes(service: dict[str, Any]) -> dict[str, PurePosixPath]:
    """Volume name -> container path of every named volume of a service."""
    found: dict[str, PurePosixPath] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "volume":
                found[volume["source"]] = PurePosixPath(volume["target"])
            continue
        source, target = volume.split(":")[:2]
        if not source.startswith((".", "/")):
            found[source] = PurePosixPath(target)
    return found


def config_option(args: list[str]) -> PurePosixPath:
    """The ``--config`` value of a command line (``--config FILE`` or ``--config=FILE``)."""
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            return PurePosixPath(args[i + 1])
        if arg.startswith("--config="):
            return PurePosixPath(arg.split("=", 1)[1])
    raise AssertionError(f"no --config in {args}")


def repo_config(service: dict[str, Any]) -> Path:
    """The repository file a service's ``--config`` names, through its bind mounts."""
    path = config_option(argv(service))
    mounts = bind_mounts(service)
    assert path in mounts, f"--config {path} is not a mounted file; mounts: {sorted(mounts)}"
    return mounts[path][0]


def service_config(service: dict[str, Any]) -> AdapterConfig:
    return load_config(repo_config(service), env=environment(service))


def container_ports(service: dict[str, Any]) -> set[int]:
    """Container-side ports a service publishes (``[host_ip:][host:]container``)."""
    ports: set[int] = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).rsplit(":", 1)[-1].split("/")[0]))
    return ports


def host_ports(service: dict[str, Any]) -> set[int]:
    """Fixed host ports a service publishes (a bare container port gets a free one)."""
    ports: set[int] = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            if entry.get("published"):
                ports.add(int(entry["published"]))
            continue
        parts = str(entry).split(":")
        if len(parts) >= 2:
            ports.add(int(parts[-2]))
    return ports


def role(service: dict[str, Any]) -> str:
    args = argv(service)
    return next(a for a in args if a in ROLES)


def replicas(service: dict[str, Any]) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


# -- the file as a whole ------------------------------------------------------------------


def test_no_obsolete_version_key() -> None:
    assert "version" not in COMPOSE_DATA


def test_the_adapter_services_are_the_issue_6_topology_plus_an_exporter() -> None:
    by_role: dict[str, int] = {}
    for name in ADAPTERS:
        by_role[role(SERVICES[name])] = by_role.get(role(SERVICES[name]), 0) + replicas(
            SERVICES[name]
        )
    assert by_role == {"scp": 2, "process": 2, "submit": 1, "export": 1}


def test_kafka_is_apache_kafka_in_kraft_mode_with_a_healthcheck() -> None:
    kafka = SERVICES["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"]), kafka["image"]
    env = environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["CLUSTER_ID"]
    test = kafka["healthcheck"]["test"]
    text = " ".join(test) if isinstance(test, list) else test
    assert re.search(r"/opt/kafka/bin/kafka-(broker-api-versions|topics)\.sh", text), text
    assert "--bootstrap-server" in text


def test_every_adapter_waits_for_a_healthy_kafka() -> None:
    assert ADAPTERS
    for name in ADAPTERS:
        depends = SERVICES[name].get("depends_on")
        assert isinstance(depends, dict), f"{name}: depends_on needs the long form"
        assert depends.get("kafka", {}).get("condition") == "service_healthy", name


def test_the_dockerfile_runs_our_cli_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines()]
    assert lines[[i for i, x in enumerate(lines) if x.startswith("FROM ")][-1]].startswith(
        "FROM python:3.11-slim"
    )
    entrypoint = next(x for x in lines if x.startswith("ENTRYPOINT "))
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == [PROGRAM]
    user = [x.split()[1] for x in lines if x.startswith("USER ")]
    assert user and user[-1] not in {"root", "0"}
    exposed = {int(p) for x in lines if x.startswith("EXPOSE ") for p in x.split()[1:]}
    assert {11112, 8080} <= exposed


# -- each adapter service -----------------------------------------------------------------


@pytest.mark.parametrize("name", ADAPTERS)
def test_command_parses_with_the_real_cli(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = argv(SERVICES[name])
    parsed: argparse.Namespace | None = None
    with contextlib.suppress(SystemExit):  # argparse exits 2; its message is on stderr
        parsed = build_parser().parse_args(args)
    if parsed is None:
        pytest.fail(f"{name}: {PROGRAM} {' '.join(args)}: {capsys.readouterr().err.strip()}")
    assert parsed.command == role(SERVICES[name])
    assert PurePosixPath(str(parsed.config)) == config_option(args)
    assert callable(parsed.handler)


@pytest.mark.parametrize("name", ADAPTERS)
def test_config_is_a_read_only_mounted_repo_file(name: str) -> None:
    service = SERVICES[name]
    path = repo_config(service)  # asserts that --config is a bind-mounted file
    read_only = bind_mounts(service)[config_option(argv(service))][1]
    assert path.is_file(), f"{name}: {path} does not exist in the repository"
    assert path.resolve().is_relative_to(REPO), f"{name}: {path} is outside the repository"
    assert read_only, f"{name}: mount the config read-only"


@pytest.mark.parametrize("name", ADAPTERS)
def test_environment_names_real_config_keys(name: str) -> None:
    service = SERVICES[name]
    env = environment(service)
    assert all(k.startswith(ENV_PREFIX) for k in env), f"{name}: unexpected variables {env}"
    try:
        config = service_config(service)
        check_config(repo_config(service), env)
    except ConfigError as exc:
        pytest.fail(f"{name}: the config with its environment is invalid:\n{exc}")
    if "DICOM_ADAPTER_ADAPTER_ID" in env:
        assert config.adapter_id == env["DICOM_ADAPTER_ADAPTER_ID"]


def test_an_unknown_variable_is_caught() -> None:
    """The check above can fail: a misspelt key is a ConfigError."""
    path = repo_config(SERVICES[ADAPTERS[0]])
    with pytest.raises(ConfigError, match=r"scp\.portt"):
        load_config(path, env={"DICOM_ADAPTER_SCP__PORTT": "11113"})


def test_scps_have_their_own_adapter_id_and_port() -> None:
    scps = [SERVICES[n] for n in ADAPTERS if role(SERVICES[n]) == "scp"]
    configs = [service_config(s) for s in scps]
    assert len({c.adapter_id for c in configs}) == len(configs)
    assert len({c.scp.port for c in configs}) == len(configs)
    for service, config in zip(scps, configs, strict=True):
        assert config.scp.port in container_ports(service), "publish the SCP's own port"
    published = [p for s in scps for p in host_ports(s)]
    assert len(published) == len(set(published)), f"host ports collide: {published}"


def test_every_adapter_shares_one_storage_volume_at_the_configured_path() -> None:
    volumes = COMPOSE_DATA.get("volumes") or {}
    shared: set[str] = set()
    for name in ADAPTERS:
        service = SERVICES[name]
        storage = PurePosixPath(str(service_config(service).storage))
        at = [vol for vol, target in named_volumes(service).items() if target == storage]
        assert at, f"{name}: storage {storage} is not on a named volume"
        shared.update(at)
    assert len(shared) == 1, f"adapters use different storage volumes: {shared}"
    assert shared <= set(volumes), "declare the storage volume under top-level volumes"


def test_adapters_reach_kafka_on_its_advertised_listener() -> None:
    advertised = environment(SERVICES["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    endpoints = {item.split("://", 1)[1] for item in advertised.split(",")}
    for name in ADAPTERS:
        servers = service_config(SERVICES[name]).kafka.bootstrap_servers
        assert servers is not None, f"{name}: no kafka.bootstrap_servers (embedded broker)"
        assert set(servers.split(",")) <= endpoints, f"{name}: {servers} vs {endpoints}"


def test_the_http_port_is_published_and_health_checked() -> None:
    for name in ADAPTERS:
        service = SERVICES[name]
        http = service_config(service).http
        assert http.port != 0, f"{name}: the HTTP endpoint is disabled"
        assert http.port in container_ports(service), f"{name}: publish http.port"
        check = " ".join(service["healthcheck"]["test"])
        assert f":{http.port}/healthz" in check, f"{name}: health check {check}"
