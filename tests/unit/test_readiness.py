"""Readiness checks: the verdict, the reasons, and checks that fail by raising or hanging."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from processors.http import NotReadyError, Readiness, storage_writable


async def test_no_checks_means_ready() -> None:
    report = await Readiness().evaluate()
    assert report.ready
    assert report.failing == ()


async def test_a_flag_fails_until_set_and_after_clear() -> None:
    readiness = Readiness()
    assigned = readiness.flag("partitions assigned", reason="waiting for the group")
    report = await readiness.evaluate()
    assert not report.ready
    assert report.results[0].error == "waiting for the group"
    assigned.set()
    assert (await readiness.evaluate()).ready
    assigned.clear("partitions revoked")
    report = await readiness.evaluate()
    assert report.failing == ("partitions assigned",)
    assert report.results[0].error == "partitions revoked"


async def test_sync_and_async_checks_and_their_reasons() -> None:
    readiness = Readiness()
    connected = asyncio.Event()

    async def kafka_connected() -> bool:
        if not connected.is_set():
            raise NotReadyError("no metadata from 127.0.0.1:9 yet\nsecond line dropped")
        return True

    readiness.add("kafka connected", kafka_connected)
    readiness.add("always", lambda: True)
    readiness.add("returns false", lambda: False)
    report = await readiness.evaluate()
    assert [r.name for r in report.results] == ["kafka connected", "always", "returns false"]
    assert report.failing == ("kafka connected", "returns false")
    assert report.results[0].error == "no metadata from 127.0.0.1:9 yet"
    assert report.results[2].error == "check returned False, not True"
    connected.set()
    readiness.remove("returns false")
    assert (await readiness.evaluate()).ready


async def test_a_hanging_check_times_out_without_hanging_the_probe() -> None:
    readiness = Readiness(timeout_s=0.05)
    never = asyncio.Event()

    async def stuck() -> bool:
        await never.wait()
        return True

    readiness.add("stuck", stuck)
    readiness.add("fine", lambda: True)
    report = await readiness.evaluate()
    assert report.failing == ("stuck",)
    assert report.results[0].error == "no answer within 0.05 s"


def test_names_are_unique() -> None:
    readiness = Readiness()
    readiness.add("storage writable", lambda: True)
    with pytest.raises(ValueError, match="already registered"):
        readiness.add("storage writable", lambda: True)


async def test_storage_writable_leaves_nothing_behind(tmp_path: Path) -> None:
    readiness = Readiness()
    readiness.add("storage writable", storage_writable(tmp_path))
    assert (await readiness.evaluate()).ready
    assert await asyncio.to_thread(os.listdir, tmp_path) == []


async def test_storage_that_is_not_a_directory_is_not_ready(tmp_path: Path) -> None:
    readiness = Readiness()
    readiness.add("missing", storage_writable(tmp_path / "absent"))
    file = tmp_path / "file"
    file.write_text("x")
    readiness.add("file", storage_writable(file))
    report = await readiness.evaluate()
    assert report.failing == ("missing", "file")
    assert "is not a directory (is the volume mounted?)" in (report.results[0].error or "")


def _read_only(path: Path, on: bool) -> None:
    """Make ``path`` refuse new files: chmod for users, the immutable flag for root
    (root ignores permission bits, but not ``chattr +i`` on ext4)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)
    else:
        path.chmod(0o555 if on else 0o755)


async def test_read_only_storage_is_not_ready(tmp_path: Path) -> None:
    await asyncio.to_thread(_read_only, tmp_path, True)
    try:
        readiness = Readiness()
        readiness.add("storage writable", storage_writable(tmp_path))
        report = await readiness.evaluate()
    finally:
        await asyncio.to_thread(_read_only, tmp_path, False)
    assert "is not writable" in (report.results[0].error or "")
