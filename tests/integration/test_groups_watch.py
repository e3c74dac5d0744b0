"""``dicom-adapter groups watch`` in a real pseudo-terminal (tmux): it shows a group
that opens, then the group's jobs once it closes (closed by ``groups close``, so the
test does not race a timeout); q quits."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from tests.helpers.cluster import REPO
from tests.helpers.dicom import make_ct
from tests.helpers.ops import running_adapter
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.dicom, pytest.mark.slow]

UUID5 = r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}"  # a group id


@pytest.fixture
def tmux() -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """``tmux -L <own server>``: nothing of another tmux user is touched."""
    if shutil.which("tmux") is None:
        pytest.fail("the watch test needs tmux (apt-get install -y tmux)")
    server = f"dsa-{uuid.uuid4().hex[:8]}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", server, *args], check=False, capture_output=True, text=True, timeout=10
        )

    try:
        yield run
    finally:
        run("kill-server")


async def test_watch_shows_a_group_open_then_its_jobs_and_quits_on_q(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    tmux: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    prefix = unique_name("watch")
    study = generate_uid()
    async with running_adapter(
        kafka_bootstrap, tmp_path, prefix, settings="timeout: 600", processes=1
    ) as adapter:
        command = (
            f"COLUMNS=200 LINES=60 {sys.executable} -m processors.cli groups watch "
            f"--config {adapter.config} "
            f"--kafka {kafka_bootstrap} 2> {tmp_path / 'watch.err'}"
        )
        started = tmux(
            "new-session", "-d", "-s", "w", "-x", "220", "-y", "60", "-c", str(REPO), command
        )
        assert started.returncode == 0, started.stderr
        screen = [""]

        def shows(*texts: str) -> Callable[[], bool]:
            def check() -> bool:
                screen[0] = tmux("capture-pane", "-p", "-t", "w").stdout
                return all(t in screen[0] for t in texts)

            return check

        async def expect(check: Callable[[], bool], what: str, timeout_s: float) -> None:
            try:
                await wait_until(check, what, timeout_s=timeout_s)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; the screen:\n{screen[0]}") from None

        await expect(shows("open groups (0)", "recent jobs"), "the empty view", timeout_s=60)
        await adapter.send(tmp_path / "s", [make_ct(patient_id="PAT-W", study_uid=study)] * 1)
        opened = shows("open groups (1)", "CLARA-OPS", "(0020,000D)")
        await expect(opened, "the open group", timeout_s=30)
        assert study not in screen[0] and "PAT-W" not in screen[0]  # no patient data
        ids = set(re.findall(UUID5, screen[0]))
        assert len(ids) == 1, screen[0]
        (gid,) = ids
        closed = await asyncio.to_thread(adapter.cli, "close", gid)
        assert closed.returncode == 0, closed.stderr
        jobs = shows("open groups (0)", "breast", "lung", "pending")
        await expect(jobs, "its jobs", timeout_s=30)
        assert gid not in screen[0]  # the group left the list; its jobs are shown
        tmux("send-keys", "-t", "w", "q")

        def ended() -> bool:
            return tmux("has-session", "-t", "w").returncode != 0

        await wait_until(ended, "watch quits on q", timeout_s=10)
        assert "Traceback" not in (tmp_path / "watch.err").read_text()
        adapter.cluster.alive()
