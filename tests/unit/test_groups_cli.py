"""``dicom-adapter groups`` usage errors: one line, exit 2, before any connection."""

from __future__ import annotations

import pytest

from processors.cli import main


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["groups", "close"], "groups close needs a GROUP_ID"),
        (["groups", "list", "abc"], "groups list takes no GROUP_ID"),
        (["groups", "watch", "--interval", "0"], "--interval must be positive"),
        (["groups", "nope"], "invalid choice: 'nope'"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main([*argv, "--kafka", "127.0.0.1:1"])
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0], err


def test_groups_without_a_kafka_address_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DICOM_ADAPTER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    assert main(["groups", "list"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--kafka" in line
