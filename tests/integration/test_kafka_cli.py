"""`dicom-adapter events` and `dicom-adapter broker start` against real brokers."""

from __future__ import annotations

import asyncio
import io
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from processors.cli import main
from processors.commands.events import human_line, print_events
from streams.broker import describe_cluster
from streams.events import (
    ClockTick,
    Envelope,
    InstanceReceived,
    JobFailed,
    envelope,
    to_dict,
)
from streams.kafka import EventPublisher, ensure_topics, topic_names

pytestmark = pytest.mark.kafka

SECRET = "PAT-SECRET-0815"


def instance(n: int) -> Envelope:
    return envelope(
        InstanceReceived(
            called_ae="CLARA-CT",
            calling_ae="MODALITY1",
            calling_host="127.0.0.1",
            association_id="assoc-1",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            sop_instance_uid=f"1.2.826.0.9.{n}",
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            patient_id=SECRET,
            study_instance_uid="1.2.826.0.2",
            series_instance_uid="1.2.826.0.3",
            received_at=1_700_000_000_000 + n,
            uri=f"file:///storage/{n}.dcm",
            size=2048,
        ),
        source="adapter-1",
        time_ms=1_700_000_000_000 + n,
        event_id=f"instance-{n}",
    )


FAILED = envelope(
    JobFailed(job_id="job-7", attempt=1, error="HTTP 503", will_retry=True),
    source="adapter-1",
    time_ms=1_700_000_000_500,
    event_id="failed-7",
)


async def seed(bootstrap: str, prefix: str) -> None:
    names = topic_names(prefix)
    await ensure_topics(bootstrap, {names.instances: 2, names.jobs: 1})
    async with EventPublisher(bootstrap) as publisher:
        key = f"CLARA-CT/{SECRET}"
        await publisher.publish_many(names.instances, [(key, instance(n)) for n in range(2)])
        # The bus clock shares the instances topic; `events` hides it unless --ticks.
        tick = envelope(ClockTick(watermark=1), source="test", time_ms=1)
        await publisher.publish(names.instances, "clock", tick)
        await publisher.publish(names.jobs, key, FAILED)


def config_file(folder: Path, prefix: str, bootstrap: str | None = None) -> Path:
    path = folder / f"{prefix}.yaml"
    lines = ["kafka:", f"  topic_prefix: {prefix}"]
    if bootstrap:
        lines.append(f"  bootstrap_servers: {bootstrap}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_events_prints_each_event_once_and_stops_at_the_end(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    prefix = unique_name("p")
    asyncio.run(seed(kafka_bootstrap, prefix))
    with_address = config_file(tmp_path, prefix, kafka_bootstrap)

    assert main(["events", "--config", str(with_address), "--from-beginning"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert sum(" instance.received " in line for line in lines) == 2
    assert any(" job.failed " in line and "job=job-7" in line for line in lines)
    assert SECRET not in "\n".join(lines)

    ticks = ["events", "--config", str(with_address), "--from-beginning", "--ticks"]
    assert main(ticks) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and sum(" clock.tick " in line for line in lines) == 1

    # Without --from-beginning and --follow there is nothing new to print.
    assert main(["events", "--config", str(with_address)]) == 0
    assert capsys.readouterr().out == ""

    # The address from KAFKA_BOOTSTRAP_SERVERS when neither --kafka nor the config has one.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    plain = config_file(tmp_path / "..", prefix)
    args = ["events", "--config", str(plain), "--topic", "jobs", "--from-beginning", "--json"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert [orjson.loads(line) for line in out] == [to_dict(FAILED)]

    # --json hides patient identifiers unless --show-phi.
    args = ["events", "--config", str(with_address), "--topic", "instances", "--from-beginning"]
    assert main([*args, "--json"]) == 0
    hidden = capsys.readouterr().out
    assert SECRET not in hidden and '"patient_id":"<redacted>"' in hidden
    assert main([*args, "--json", "--show-phi"]) == 0
    assert SECRET in capsys.readouterr().out


async def test_events_follow_prints_new_events_as_they_arrive(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("p")
    await seed(kafka_bootstrap, prefix)
    out = io.StringIO()
    names = topic_names(prefix)
    task = asyncio.create_task(
        print_events(
            kafka_bootstrap,
            [names.instances],
            from_beginning=True,
            follow=True,
            render=human_line,
            out=out,
        )
    )
    try:
        await _until(lambda: out.getvalue().count("\n") >= 2, task)
        async with EventPublisher(kafka_bootstrap) as publisher:
            await publisher.publish(names.instances, "CLARA-CT/x", instance(9))
        await _until(lambda: "sop=1.2.826.0.9.9" in out.getvalue(), task)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert out.getvalue().count("\n") == 3


async def _until(
    condition: Callable[[], bool], task: asyncio.Task[int], timeout_s: float = 30
) -> None:
    """Poll a condition on the command's output (readiness, not a timing assumption)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert not task.done(), f"events ended early: {task.result()}"
        assert asyncio.get_running_loop().time() < deadline, "no output in time"
        await asyncio.sleep(0.05)


@pytest.mark.slow
def test_broker_start_prints_the_address_first_and_stops_on_sigterm(
    kafka_jars: Path, tmp_path: Path
) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "processors.cli", "broker", "start", "--data", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = _line_reader(proc)
        first = _read_line(proc, lines, timeout_s=90)
        match = re.fullmatch(r"bootstrap: (127\.0\.0\.1:(\d+))", first)
        assert match, f"first line was {first!r}"
        assert _read_line(proc, lines, timeout_s=5) == "broker: Apache Kafka 4.1.1 (KRaft)"
        cluster = asyncio.run(describe_cluster(match.group(1)))
        assert cluster["brokers"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.1", int(match.group(2))), timeout=2),
        ):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def _line_reader(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """Lines of the child's stdout, read by a thread (``None`` at end of output)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                lines.put(line.rstrip("\n"))
        except (ValueError, OSError):  # closed by the test's clean-up
            pass
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _read_line(
    proc: subprocess.Popen[str], lines: queue.Queue[str | None], timeout_s: float
) -> str:
    try:
        line = lines.get(timeout=timeout_s)
    except queue.Empty:
        pytest.fail(f"no line on stdout within {timeout_s} s")
    if line is None:
        err = proc.stderr.read() if proc.stderr else ""
        pytest.fail(f"broker start exited with {proc.wait()}: {err}")
    return line
