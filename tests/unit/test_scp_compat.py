"""streams.scp.compat: the SCP runs only on the pynetdicom releases it is tested with."""

from __future__ import annotations

import importlib
import inspect
import tomllib
from pathlib import Path

import pynetdicom
import pytest
from helpers.scp import scp_config

from streams.scp import ScpService
from streams.scp.compat import (
    PYNETDICOM_INTERNALS,
    TESTED_PYNETDICOM,
    UntestedPynetdicomError,
    installed_pynetdicom,
    internals,
    is_tested,
    require_tested_pynetdicom,
    requirement,
)
from streams.scp.gate import AssociationGate
from streams.scp.handlers import StoreHandler
from streams.scp.policy import AssociationPolicy
from streams.scp.server import DicomServer

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_installed_pynetdicom_is_one_the_scp_is_tested_with() -> None:
    version = installed_pynetdicom()
    assert is_tested(version), (
        f"the SCP fast path uses pynetdicom private internals {internals()}; version "
        f"{version} is untested (tested: {requirement()}): run "
        "tests/integration/test_scp_*.py and widen TESTED_PYNETDICOM in "
        "streams/scp/compat.py (and the pin in pyproject.toml)"
    )


def test_pyproject_pins_the_tested_range() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    pins = [d for d in dependencies if d.startswith("pynetdicom")]
    assert pins == [requirement()], f"pyproject.toml must pin {requirement()}, as compat.py"


def test_every_internal_named_exists_in_the_installed_pynetdicom() -> None:
    missing = []
    for module, name, attribute in PYNETDICOM_INTERNALS:
        cls = getattr(importlib.import_module(module), name)
        # A method or class attribute, or an attribute its methods assign.
        if attribute not in dir(cls) and f"self.{attribute}" not in inspect.getsource(cls):
            missing.append(f"{name}.{attribute}")
    assert missing == [], f"pynetdicom {installed_pynetdicom()} has no {', '.join(missing)}"


@pytest.mark.parametrize(
    ("version", "tested"),
    [
        (TESTED_PYNETDICOM[0], True),
        ("3.0.4", True),
        ("3.0.11", True),
        ("3.0.3", False),
        ("3.1", False),
        ("3.1.0", False),
        ("3.1.0.dev0", False),
        ("2.0.2", False),
        ("4.0.0", False),
        ("", False),
        ("unknown", False),
    ],
)
def test_tested_range_bounds(version: str, tested: bool) -> None:
    assert is_tested(version) is tested


# -- the runtime guard ------------------------------------------------------------------


@pytest.fixture
def untested(monkeypatch: pytest.MonkeyPatch) -> str:
    """pynetdicom claims a release outside the tested range."""
    monkeypatch.setattr(pynetdicom, "__version__", "3.1.0")
    return "3.1.0"


def test_the_guard_names_the_version_and_the_fix(untested: str) -> None:
    with pytest.raises(UntestedPynetdicomError) as raised:
        require_tested_pynetdicom()
    message = str(raised.value)
    assert "\n" not in message
    assert f"pynetdicom {untested} is untested" in message
    assert f"pip install '{requirement()}'" in message and "TESTED_PYNETDICOM" in message
    assert raised.value.exit_code == 1 and not raised.value.retriable
    require_tested_pynetdicom(TESTED_PYNETDICOM[0])  # an explicit tested version passes


def test_the_server_does_not_listen_on_an_untested_pynetdicom(
    tmp_path: Path, untested: str
) -> None:
    gate = AssociationGate(AssociationPolicy.build(["CT"]))

    class NoSink:
        def deliver(self, topic: str, key: str, env: object) -> None:
            raise AssertionError("nothing is received")

    handler = StoreHandler(storage=tmp_path, gate=gate, sink=NoSink(), topic="t", source="s")
    server = DicomServer(host="127.0.0.1", port=0, gate=gate, handler=handler)
    with pytest.raises(UntestedPynetdicomError, match=untested):
        server.start()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port


async def test_the_service_refuses_before_it_opens_anything(tmp_path: Path, untested: str) -> None:
    storage = tmp_path / "storage"
    service = ScpService(scp_config(storage, "127.0.0.1:9", "t"))
    with pytest.raises(UntestedPynetdicomError, match=untested):
        await service.start()
    assert not storage.exists()  # no outbox, no Kafka connection attempted
