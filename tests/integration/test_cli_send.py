"""``dicom-adapter send`` against real DICOM peers: DCMTK's storescp and a pynetdicom
SCP that refuses some instances with a status (issue 20)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.helpers.dicom import dcmtk, make_ct, write_instances
from tests.helpers.peers import RecordingScp, StoreScp

CLI = [sys.executable, "-m", "processors.cli"]
REPO = Path(__file__).resolve().parents[2]


def send(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "send", *argv],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )  # fmt: skip


@pytest.mark.dicom
@pytest.mark.skipif(dcmtk("storescp") is None, reason="needs DCMTK storescp")
def test_a_folder_reaches_storescp_and_the_summary_says_so(tmp_path: Path) -> None:
    files = write_instances(tmp_path / "study", [make_ct(instance_number=i) for i in range(3)])
    (tmp_path / "study" / "notes.txt").write_text("not DICOM")
    with StoreScp(tmp_path / "received") as scp:
        result = send(
            "--ae", "STORESCP", "--host", "127.0.0.1", "--port", str(scp.port),
            str(tmp_path / "study"), cwd=tmp_path,
        )  # fmt: skip
        stored = sorted(p.name for p in (tmp_path / "received").iterdir() if p.is_file())
    assert result.returncode == 1, result.stderr  # one file was not DICOM
    lines = result.stdout.splitlines()
    assert lines[-3:] == [
        f"sent 3 of 4 file(s) to STORESCP@127.0.0.1:{scp.port}",
        "refused 0",
        "failed 1: 1 not_dicom",
    ]
    assert lines[0].startswith("failed: ") and "notes.txt" in lines[0]
    assert len([n for n in stored if n.startswith("CT.")]) == len(files)
    assert "Traceback" not in result.stderr


def test_refusals_are_counted_with_their_status(tmp_path: Path) -> None:
    refused = make_ct(instance_number=2)
    files = write_instances(tmp_path, [make_ct(instance_number=1), refused])
    with RecordingScp(lambda uid: 0xA700 if uid == refused.SOPInstanceUID else 0) as scp:
        result = send(
            "--ae", "RECORDER", "--port", str(scp.port), *map(str, files), cwd=tmp_path
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"refused: {files[1]}: 0xA700 (out of resources)",
        f"sent 1 of 2 file(s) to RECORDER@127.0.0.1:{scp.port}",
        "refused 1: 1 0xA700 (out of resources)",
        "failed 0",
    ]
    assert sorted(scp.uids()) == sorted(f.stem for f in files)


def test_everything_sent_exits_0(tmp_path: Path) -> None:
    files = write_instances(tmp_path, [make_ct(instance_number=i) for i in range(2)])
    with RecordingScp() as scp:
        result = send("--ae", "RECORDER", "--port", str(scp.port), str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == f"sent 2 of 2 file(s) to RECORDER@127.0.0.1:{scp.port}"
    assert len(scp.uids()) == len(files)
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


def test_a_terminal_gets_a_progress_bar(tmp_path: Path) -> None:
    files = write_instances(tmp_path, [make_ct(instance_number=i) for i in range(3)])
    controller, terminal = pty.openpty()
    # A terminal 100 columns wide (a bare pty has 0, and tqdm draws nothing in that).
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    with RecordingScp() as scp:
        proc = subprocess.Popen(
            [*CLI, "send", "--ae", "RECORDER", "--port", str(scp.port), *map(str, files)],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=terminal, text=True,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "TERM": "xterm"},
        )  # fmt: skip
        os.close(terminal)
        out, _ = proc.communicate(timeout=60)
        bar = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            bar += chunk
        os.close(controller)
    assert proc.returncode == 0, out
    text = bar.decode(errors="replace")
    assert f"C-STORE to RECORDER@127.0.0.1:{scp.port}" in text
    assert "3/3" in text and "100%" in text
    assert out.splitlines()[0].startswith("sent 3 of 3 file(s)")  # the summary stays on stdout
