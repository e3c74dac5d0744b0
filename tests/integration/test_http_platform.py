"""``HttpPlatform`` against real sockets: headers, body, timeouts, refused connections."""

from __future__ import annotations

import socket
import threading

from processors.submit import HttpPlatform, PlatformJob
from streams.events import GroupInstance
from tests.helpers.platform import PlatformServer

JOB = PlatformJob(
    job_id="job-h1",
    name="aet1-lung-20240101000000",
    ae_title="AET1",
    pipeline_name="lung",
    pipeline_id="8abf",
    priority="immediate",
    payload_uri="/data/payloads/job-h1",
    instances=(GroupInstance("1.2", "1.3", "1.4", "/data/payloads/job-h1/dcm/P/1.3/1.4/1.2.dcm"),),
    attempt=1,
)


async def test_posts_json_with_the_idempotency_key_and_reads_the_platform_id() -> None:
    with PlatformServer() as server:
        platform = HttpPlatform(server.url, timeout_s=5)
        try:
            first = await platform.submit(JOB)
            again = await platform.submit(JOB)
        finally:
            await platform.aclose()
    assert (first.kind, first.platform_job_id) == ("submitted", "plat-1")
    assert (again.kind, again.platform_job_id) == ("submitted", "plat-1")  # replayed answer
    assert server.keys() == ["job-h1", "job-h1"] and list(server.created) == ["job-h1"]
    assert server.requests[0].body == JOB.to_json()


async def test_a_slow_platform_is_a_retriable_timeout() -> None:
    gate = threading.Event()
    with PlatformServer(gate=gate) as server:
        platform = HttpPlatform(server.url, timeout_s=0.3)
        try:
            outcome = await platform.submit(JOB)
        finally:
            gate.set()
            await platform.aclose()
    assert outcome.kind == "retriable" and "timeout" in outcome.error


async def test_a_refused_connection_is_retriable_and_hides_credentials() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    platform = HttpPlatform(f"http://user:s3cret@127.0.0.1:{port}/jobs?token=abc", timeout_s=2)
    try:
        outcome = await platform.submit(JOB)
    finally:
        await platform.aclose()
    assert outcome.kind == "retriable" and "cannot reach" in outcome.error
    assert "s3cret" not in outcome.error and "abc" not in outcome.error
