"""Our side: the processor runtime as a child process, and how to read its output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import orjson

from bench.windows.data import AE_TITLE, is_sentinel_key
from bench.windows.inproc import PIPELINE_ID
from bench.windows.sides import SideSpec

_ROOT = Path(__file__).resolve().parents[2]

GROUP_CLOSED = b"group.closed"


def parse_group_closed(_key: bytes | None, value: bytes) -> tuple[str, int] | None:
    """A ``group.closed`` record: ``(group key, number of inputs)``; others ignored."""
    if GROUP_CLOSED not in value[:64]:
        return None
    data = orjson.loads(value)["data"]
    key = data["group_key"]
    if is_sentinel_key(key):
        return None
    return key, len(data["inputs"])


def shell_spec(
    bootstrap: str,
    *,
    prefix: str,
    group_id: str,
    cwd: str,
    jobs_topic: str | None = None,
    profile: str | None = None,
) -> SideSpec:
    """The bench-only shell (:mod:`bench.windows.ours_shell`) as a child process."""
    jobs_topic = jobs_topic or f"{prefix}.jobs"
    argv = [
        sys.executable,
        "-m",
        "bench.windows.ours_shell",
        "--kafka",
        bootstrap,
        "--prefix",
        prefix,
        "--group",
        group_id,
        "--jobs-topic",
        jobs_topic,
    ]
    if profile:
        argv += ["--profile", profile]
    return SideSpec(
        "ours-shell",
        argv,
        group_id,
        jobs_topic,
        parse_group_closed,
        input_topic=f"{prefix}.instances",
        cwd=cwd,
    )


def runtime_available() -> bool:
    """Whether the processor runtime and ``dicom-adapter process`` exist yet."""
    try:
        from processors.cli import COMMAND_MODULES
    except ImportError:
        return False
    return "process" in COMMAND_MODULES and (_ROOT / "processors" / "runtime").is_dir()


def write_config(
    path: Path, *, bootstrap: str, prefix: str, partitions: int, storage: Path
) -> None:
    """The adapter config of the ``process`` role under test (one AE title, one pipeline)."""
    config = {
        "adapter_id": "bench",
        "storage": str(storage),
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topic_prefix": prefix,
            "partitions": partitions,
        },
        "scp": {
            "ae_titles": [
                {
                    "ae_title": AE_TITLE,
                    "processorSettings": {
                        "groupBy": "Patient",
                        "priority": "normal",
                        "timeout": 5,
                        "pipeline-bench": PIPELINE_ID,
                    },
                }
            ]
        },
        "http": {"port": 0},
    }
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def runtime_spec(
    bootstrap: str,
    *,
    config: Path,
    prefix: str,
    cwd: str,
    log_level: str = "WARNING",
    profile: str | None = None,
    tuned: tuple[str, ...] = (),
    name: str | None = None,
    replicas: int = 1,
) -> SideSpec:
    """``dicom-adapter process`` (the real runtime) as a child process.

    With ``profile`` it runs under pyinstrument (text report written there on exit);
    with ``tuned`` (:mod:`bench.windows.ours_tuned` options) through that what-if wrapper.
    ``cwd`` is the source tree it runs from (``python -m`` imports from there first), so
    a worktree of another commit runs that commit's runtime: ``name`` tells them apart.
    ``replicas`` > 1: that many identical processes (same config, so one consumer group
    that splits the partitions between them), named ``<name>, <n> replicas``; each
    profile goes to ``<profile stem>.<n><suffix>``.
    """
    entry = ["-m", "processors.cli"]
    if tuned:
        entry = ["-m", "bench.windows.ours_tuned", *tuned, "--"]
    cli = [*entry, "--log-level", log_level, "process"]

    def argv(report: str | None) -> list[str]:
        runner = [sys.executable]
        if report:
            runner += [
                "-m", "pyinstrument", "-i", "0.001", "-r", "text", "--show-all", "-o", report,
            ]  # fmt: skip
        return [*runner, *cli, "--config", str(config), "--kafka", bootstrap]

    replica_argvs: list[list[str]] = []
    if replicas > 1:
        replica_argvs = [argv(_numbered(profile, n + 1)) for n in range(replicas)]
    base = name or " ".join(["ours", *tuned])
    # consumer group of the AE title's lane: processors.roles.lane.processors_group
    return SideSpec(
        base if replicas == 1 else f"{base}, {replicas} replicas",
        replica_argvs[0] if replica_argvs else argv(profile),
        f"{prefix}.processors.{AE_TITLE}",
        f"{prefix}.jobs",
        parse_group_closed,
        input_topic=f"{prefix}.instances",
        cwd=cwd,
        replica_argvs=replica_argvs,
        base_name=base,
    )


def _numbered(path: str | None, n: int) -> str | None:
    """``a/b.profile.txt`` -> ``a/b.profile.<n>.txt`` (``None`` stays ``None``)."""
    if path is None:
        return None
    p = Path(path)
    return str(p.with_suffix(f".{n}{p.suffix}"))
