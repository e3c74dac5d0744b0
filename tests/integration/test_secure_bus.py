"""The roles on a secure bus: TLS + SCRAM-SHA-512 with each role's least ACLs.

The secure embedded broker (streams/broker/secure.py) enforces ACLs; every role runs
as its own user with only what ``streams.kafka.acls.role_acls`` grants it, so the ACL
table in docs/security.md is what these tests prove. A C-STORE through the SCP becomes a
submitted job; the record keys carry no Patient ID; a role with a wrong password stops at
once with one line and exit code 1; a plaintext client gets nothing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.broker.secure import SecureBroker, grant
from streams.config import KafkaConfig
from streams.events import GroupClosed, InstanceReceived, JobSubmitted, is_hashed_key
from streams.kafka.acls import ROLES, role_acls
from tests.helpers.cluster import REPO, Cluster
from tests.helpers.dicom import make_ct, storescu, write_instances
from tests.helpers.processor import poll_readyz
from tests.helpers.waiting import free_port, wait_for_ledger

pytestmark = [pytest.mark.secure, pytest.mark.kafka, pytest.mark.dicom, pytest.mark.slow]

AE = "SECURE-CT"
PATIENT = "SECURE-PAT-4711"
KEY_SECRET = "a-key-secret-shared-by-the-bus-0123"


def role_env(security: SecureBroker, user: str, password: str | None = None) -> dict[str, str]:
    """What a deployment sets for one role: its Kafka login and the bus's key secret."""
    return {
        "DICOM_ADAPTER_KAFKA__SECURITY__PROTOCOL": "SASL_SSL",
        "DICOM_ADAPTER_KAFKA__SECURITY__USERNAME": user,
        "DICOM_ADAPTER_KAFKA__SECURITY__PASSWORD": password or security.users[user],
        "DICOM_ADAPTER_KAFKA__SECURITY__CA": str(security.ca),
        "DICOM_ADAPTER_KAFKA__KEY_SECRET": KEY_SECRET,
    }


def write_config(path: Path, prefix: str, storage: Path) -> Path:
    storage.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"storage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: 2\n"
        "processor:\n  commit_interval_ms: 200\n"
        "scp:\n  host: 127.0.0.1\n  watermark_percent: 100\n  reserve_space_gb: 0\n"
        f"  ae_titles:\n    - ae_title: {AE}\n"
        "      processorSettings: {groupBy: Study, timeout: 5, pipeline-lung: P-LUNG}\n"
    )
    return path


async def test_roles_with_their_own_users_and_acls_turn_a_c_store_into_a_job(
    tmp_path: Path, secure_kafka: tuple[str, SecureBroker], unique_name
) -> None:
    bootstrap, security = secure_kafka
    prefix = unique_name("secure")
    kafka = KafkaConfig(bootstrap_servers=bootstrap, topic_prefix=prefix)
    for role in ROLES:
        await grant(security.connection(bootstrap), role, role_acls(role, kafka))
    config = write_config(tmp_path / "adapter.yaml", prefix, tmp_path / "storage")
    cluster = Cluster(bootstrap, config, tmp_path)
    try:
        scp = await cluster.start(
            "scp", "scp", dicom_port=free_port(), env=role_env(security, "scp")
        )
        process = await cluster.start("process", "process", env=role_env(security, "process"))
        submit = await cluster.start("submit", "submit", env=role_env(security, "submit"))
        for role in (scp, process, submit):
            await poll_readyz(role.url, lambda status, _b, r=role: status == 200 or not r.running)
            role.alive()
        files = write_instances(
            tmp_path / "in", [make_ct(patient_id=PATIENT, study_uid="1.2.826.7") for _ in range(3)]
        )
        sent = await asyncio.to_thread(storescu, scp.dicom_port, files, aec=AE)
        assert sent.returncode == 0, sent.stderr

        def submitted(records: list) -> bool:
            return any(isinstance(r.envelope.data, JobSubmitted) for r in records)

        admin = security.connection(bootstrap)
        records = await wait_for_ledger(
            admin, kafka.jobs_topic, submitted, timeout_s=60, alive=cluster.alive
        )
        groups = [r.envelope.data for r in records if isinstance(r.envelope.data, GroupClosed)]
        assert [len(g.instances) for g in groups if g.jobs] == [3]

        def instance_records(records: list) -> list:  # the instances topic has clock ticks too
            return [r for r in records if isinstance(r.envelope.data, InstanceReceived)]

        instances = instance_records(
            await wait_for_ledger(
                admin, kafka.instances_topic, lambda r: len(instance_records(r)) == 3
            )
        )
        for record in [*records, *instances]:
            assert is_hashed_key(record.key or ""), record.key
            assert PATIENT not in (record.key or "")
        codes = await cluster.terminate()
        assert codes == {"scp": 0, "process": 0, "submit": 0}, codes
        for role in cluster.roles:
            text = role.log.read_text()
            assert PATIENT not in text and security.users[role.name] not in text
    finally:
        await cluster.kill_all()


def test_a_role_with_a_wrong_password_stops_with_one_line(
    tmp_path: Path, secure_kafka: tuple[str, SecureBroker], unique_name
) -> None:
    bootstrap, security = secure_kafka
    config = write_config(tmp_path / "adapter.yaml", unique_name("secure"), tmp_path / "s")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_ADAPTER")}
    env |= role_env(security, "scp", password="not-the-password")
    env["DICOM_ADAPTER_SCP__PORT"] = str(free_port())
    done = subprocess.run(
        [sys.executable, "-m", "processors.cli", "scp", "--config", str(config),
         "--kafka", bootstrap],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"dicom-adapter: error: kafka: {bootstrap} refused the login of user 'scp' "
        "(SCRAM-SHA-512); check kafka.security.username and kafka.security.password"
    ], done.stderr
    assert "not-the-password" not in done.stderr


def test_a_plaintext_client_gets_nothing(
    tmp_path: Path, secure_kafka: tuple[str, SecureBroker]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_ADAPTER")}
    done = subprocess.run(
        [sys.executable, "-m", "processors.cli", "events", "--from-beginning",
         "--kafka", secure_kafka[0]],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""


def test_broker_start_secure_as_docs_security_shows(tmp_path: Path) -> None:
    """``dicom-adapter broker start --secure --data DIR`` (docs/security.md): its output
    lines, and a role user logging in with the printed CA and users file."""
    import json
    import queue
    import re
    import signal
    import threading

    from streams.broker import describe_cluster
    from streams.broker.secure import SecureBroker as Files

    data = tmp_path / "secure-broker"
    cmd = [
        sys.executable,
        "-m",
        "processors.cli",
        "broker",
        "start",
        "--secure",
        "--data",
        str(data),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                lines.put(line.rstrip("\n"))
        except (ValueError, OSError):  # closed by the clean-up below
            pass

    threading.Thread(target=pump, daemon=True).start()
    try:
        out = [lines.get(timeout=120) for _ in range(5)]
        bootstrap = re.fullmatch(r"bootstrap: (127\.0\.0\.1:\d+)", out[0])
        assert bootstrap, out
        assert out[1] == "broker: Apache Kafka 4.1.1 (KRaft, SASL_SSL + SCRAM-SHA-512)"
        assert out[2] == f"data: {data.resolve()}"
        ca = data.resolve() / "security" / "broker-ca.pem"
        assert out[3] == f"security: SASL_SSL, SCRAM-SHA-512; CA certificate {ca}"
        users_file = data.resolve() / "security" / "users.json"
        assert out[4].startswith(
            f"users: {users_file} (admin: super user; scp, process, submit, export, cli"
        )
        assert oct(users_file.stat().st_mode & 0o777) == "0o600"
        users = json.loads(users_file.read_text())
        files = Files(data.resolve() / "security", ca, data / "unused", users)
        cluster = asyncio.run(describe_cluster(files.connection(bootstrap.group(1), "cli")))
        assert cluster["brokers"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_the_acl_table_of_docs_security_is_the_code() -> None:
    doc = (REPO / "docs" / "security.md").read_text()
    table = doc.split("<!-- acl-table -->")[1].split("<!-- /acl-table -->")[0]
    rows = [line for line in table.strip().splitlines()[2:]]
    kafka = KafkaConfig(topic_prefix="dicom")
    expected = [
        f"| {role} | {acl.resource} `{acl.name}` | {acl.pattern} | {', '.join(acl.operations)} |"
        for role in ROLES
        for acl in role_acls(role, kafka)
    ]
    assert rows == expected
