"""``dicom-adapter send``: where it sends by default and what its summary says."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from processors.cli import main
from processors.commands.send import resolve_peer, summary
from streams.config import AdapterConfig
from streams.errors import UsageError
from streams.scu import DicomPeer, SendOutcome


def args(**given: object) -> argparse.Namespace:
    values: dict[str, object] = {"ae": None, "host": None, "port": None, "calling_ae": "ME"}
    values.update(given)
    return argparse.Namespace(**values)


def config(*titles: str, host: str = "0.0.0.0", port: int = 11112) -> AdapterConfig:
    entries = [{"ae_title": t, "processorSettings": {"pipeline-a": "x"}} for t in titles]
    return AdapterConfig.model_validate({"scp": {"host": host, "port": port, "ae_titles": entries}})


def test_defaults_are_the_local_scp_of_the_config() -> None:
    assert resolve_peer(args(), config("CLARA-MG")) == DicomPeer(
        "CLARA-MG", "127.0.0.1", 11112, "ME"
    )
    assert resolve_peer(args(), config("A", host="10.1.2.3", port=104)).host == "10.1.2.3"


def test_flags_win() -> None:
    peer = resolve_peer(args(ae="X", host="pacs", port=4242), config("A", "B"))
    assert peer == DicomPeer("X", "pacs", 4242, "ME")


@pytest.mark.parametrize(("titles", "found"), [(("A", "B"), "it has A, B"), ((), "it has none")])
def test_ambiguous_ae_title_asks_for_ae(titles: tuple[str, ...], found: str) -> None:
    with pytest.raises(UsageError) as info:
        resolve_peer(args(), config(*titles))
    assert "pass --ae" in str(info.value) and found in str(info.value)


def test_tls_only_scp_needs_a_port() -> None:
    plain = config("A")
    tls_only = plain.model_copy(update={"scp": plain.scp.model_copy(update={"port": None})})
    with pytest.raises(UsageError, match="pass --host and --port"):
        resolve_peer(args(), tls_only)


def test_summary_counts_sent_refused_with_status_and_failed_with_reason() -> None:
    peer = DicomPeer("AE", "127.0.0.1", 104)
    outcomes = [
        SendOutcome(0, "a.dcm", "sent", status=0),
        SendOutcome(1, "b.dcm", "refused", status=0xA700),
        SendOutcome(2, "c.dcm", "refused", status=0xA700),
        SendOutcome(3, "d.txt", "failed", reason="not_dicom", error="not a DICOM Part 10 file"),
    ]
    assert summary(outcomes, peer) == [
        "refused: b.dcm: 0xA700 (out of resources)",
        "refused: c.dcm: 0xA700 (out of resources)",
        "failed: d.txt: not a DICOM Part 10 file",
        "sent 1 of 4 file(s) to AE@127.0.0.1:104",
        "refused 2: 2 0xA700 (out of resources)",
        "failed 1: 1 not_dicom",
    ]


def test_missing_path_is_a_one_line_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DICOM_ADAPTER_CONFIG", raising=False)
    assert main(["send", "--ae", "A", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file or folder" in err


def test_summary_names_at_most_twenty_files_and_counts_all() -> None:
    peer = DicomPeer("AE", "127.0.0.1", 104)
    outcomes = [
        SendOutcome(i, f"{i}.dcm", "failed", reason="connect_failed", error="cannot connect")
        for i in range(25)
    ]
    lines = summary(outcomes, peer)
    assert lines[:2] == ["failed: 0.dcm: cannot connect", "failed: 1.dcm: cannot connect"]
    assert lines[20:] == [
        "... and 5 more file(s) not sent",
        "sent 0 of 25 file(s) to AE@127.0.0.1:104",
        "refused 0",
        "failed 25: 25 connect_failed",
    ]
