"""Bad config files through the real CLI: ``config check``, ``scp`` and ``run`` agree.

Issue 8 ("bad configs"): for each file in the table, every command exits 2 and prints
one line per problem, naming the key (and the AE title) and how to fix it, never a
traceback; and ``scp`` and ``run`` refuse it before anything listens or connects.
Before, ``scp`` and ``submit`` started (HTTP endpoint included) with processor
settings ``config check`` rejects and failed later with exit 1, and ``run`` first
started a broker or connected to Kafka; an empty file ran with the defaults (no AE
title, so every association refused).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import processors.commands.run as run_command
import processors.commands.scp as scp_command
import processors.commands.submit as submit_command
from processors.cli import main

REPO = Path(__file__).resolve().parents[2]
PIPELINE = "        pipeline-lung: 8abf244aff7647989d4f6b3987a85759\n"
ALL = ("config check", "scp", "run")

#: name -> (file text or None for no file, [(line start, fix fragment)], commands).
TABLE: dict[str, tuple[str | None, list[tuple[str, str]], tuple[str, ...]]] = {
    "wrong types": (
        "adapter_id: 12\nstorage: [a, b]\n"
        "kafka: {partitions: many, replication_factor: 1.5}\n"
        "scp: {port: 11112x, max_associations: true, reject_unknown_sources: maybe,\n"
        "      acse_timeout_s: 0, network_timeout_s: -1}\n",
        [
            ("adapter_id: 12 is not text", "quote it"),
            ("storage: a list is not a path", "use e.g. ./data"),
            ("kafka.partitions: 'many' is not a whole number", "use an integer"),
            ("kafka.replication_factor: 1.5 is not a whole number", "use an integer"),
            ("scp.port: '11112x' is not a whole number", "use an integer"),
            ("scp.max_associations: true is a boolean", "use a number"),
            ("scp.reject_unknown_sources: 'maybe' is not true or false", "use true or false"),
            ("scp.acse_timeout_s: 0 is too small", "use more than 0"),
            ("scp.network_timeout_s: -1 is too small", "use more than 0"),
        ],
        ALL,
    ),
    "unknown keys": (
        "adapterid: a\nkafka: {bootstrap: 'x:1'}\nscp:\n  prot: 11112\n  ae_titles:\n"
        "    - ae_title: CT\n      procesor: aetitle\n      processorSettings:\n" + PIPELINE,
        [
            ("adapterid: unknown key", "did you mean 'adapter_id'?"),
            ("kafka.bootstrap: unknown key", "did you mean 'bootstrap_servers'?"),
            ("scp.prot: unknown key", "did you mean 'port'?"),
            ("scp.ae_titles[0] (CT): procesor: unknown key", "did you mean 'processor'?"),
        ],
        ALL,
    ),
    "bad AE titles": (
        "scp:\n  ae_titles:\n"
        "    - {ae_title: '', processorSettings: {pipeline-a: A}}\n"
        "    - {ae_title: WAY-TOO-LONG-AE-TITLE, processorSettings: {pipeline-a: A}}\n"
        "    - {ae_title: ' LEADING', processorSettings: {pipeline-a: A}}\n"
        "    - {ae_title: 'BACK\\SLASH', processorSettings: {pipeline-a: A}}\n",
        [
            ("scp.ae_titles[0] (): ae_title: AE title is empty", "use 1 to 16 characters"),
            ("scp.ae_titles[1] (WAY-TOO-LONG-AE-TITLE): ae_title:", "shorten it"),
            ("scp.ae_titles[2] ( LEADING): ae_title:", "remove them"),
            ("scp.ae_titles[3] (BACK\\SLASH): ae_title:", "printable ASCII only"),
        ],
        ALL,
    ),
    "duplicate AE titles": (
        "scp:\n  ae_titles:\n"
        "    - {ae_title: CT, processorSettings: {pipeline-a: A}}\n"
        "    - {ae_title: CT, processorSettings: {pipeline-b: B}}\n"
        "  sources: [{ae_title: MOD}, {ae_title: MOD}]\n",
        [
            ("scp.ae_titles[1] (CT): ae_title: 'CT' is already used", "remove or rename one"),
            ("scp.sources[1] (MOD): ae_title: 'MOD' is already used", "remove or rename one"),
        ],
        ALL,
    ),
    "bad processorSettings": (
        "scp:\n  ae_titles:\n    - ae_title: CT\n      processorSettings:\n"
        "        {groupBy: Hospital, priority: urgent, timeout: soon, pipeline-: x,"
        " colour: red}\n"
        "    - {ae_title: MR, processorSettings: not a mapping}\n",
        [
            ("scp.ae_titles[0] (CT): processorSettings.groupBy: 'Hospital'", "use Patient"),
            ("scp.ae_titles[0] (CT): processorSettings.priority: 'urgent'", "one of lower"),
            ("scp.ae_titles[0] (CT): processorSettings.timeout: 'soon'", "use an integer"),
            ("scp.ae_titles[0] (CT): processorSettings.pipeline-:", "use e.g. pipeline-lung"),
            ("scp.ae_titles[0] (CT): processorSettings.colour: unknown setting", "allowed:"),
            ("scp.ae_titles[1] (MR): processorSettings: expected a mapping", "got 'not a"),
        ],
        ALL,
    ),
    "missing pipelines": (
        "scp:\n  ae_titles:\n    - {ae_title: CT, processorSettings: {groupBy: Study}}\n"
        "    - {ae_title: MR}\n",
        [
            ("scp.ae_titles[0] (CT): processorSettings: No pipeline", "add at least one"),
            ("scp.ae_titles[1] (MR): processorSettings: No pipeline", "add at least one"),
        ],
        ALL,
    ),
    "custom processor not installed": (
        "scp:\n  ae_titles:\n    - {ae_title: US, processor: 'no_such_pkg.mod:Proc'}\n",
        [("scp.ae_titles[0] (US): processor: 'no_such_pkg.mod:Proc'", "install the package")],
        ("config check", "run"),  # the scp role never imports processors
    ),
    "bad ports": (
        "scp: {port: 70000}\nhttp: {port: -1}\n",
        [
            ("scp.port: 70000 is too large", "use at most 65535"),
            ("http.port: -1 is too small", "use at least 0"),
        ],
        ALL,
    ),
    "bad kafka settings": (
        "kafka: {bootstrap_servers: no-port-here, topic_prefix: 'bad prefix!', partitions: 0}\n",
        [
            ("kafka.bootstrap_servers: 'no-port-here'", "use host:port"),
            ("kafka.topic_prefix: 'bad prefix!'", "use letters, digits"),
            ("kafka.partitions: 0 is too small", "use at least 1"),
        ],
        ALL,
    ),
    "http submitter without url": (
        "submitter: {kind: http}\n",
        [("submitter.url: is required when kind is http", "e.g. http://platform:8080/jobs")],
        ALL,
    ),
    "bad submitter": (
        "submitter: {kind: carrier-pigeon, url: 'ftp://x', max_attempts: 0}\n",
        [
            ("submitter.kind: 'carrier-pigeon' is not one of", "'kafka' or 'http'"),
            ("submitter.url: 'ftp://x' is not an http(s) URL", "use e.g. http://"),
            ("submitter.max_attempts: 0 is too small", "use at least 1"),
        ],
        ALL,
    ),
    "not YAML": (
        "scp: [unclosed\n  port: : :\n",
        [("config file {path}: not valid YAML at line 2, column 7", "fix the syntax there")],
        ALL,
    ),
    "a list, not a mapping": (
        "- just\n- a list\n",
        [("config file {path}: the top level is a list", "start with keys such as 'scp:'")],
        ALL,
    ),
    "duplicate keys": (
        "scp:\n  port: 1\n  port: 2\n",
        [("config file {path}: line 3: key 'port' repeats the one on line 2", "remove or")],
        ALL,
    ),
    "empty file": (
        "",
        [("config file {path}: is empty", "give no config file to run with the defaults")],
        ALL,
    ),
    "missing file": (
        None,
        [("config file {path}: not found", "check the path")],
        ALL,
    ),
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overrides from the developer's shell must not change what these tests check."""
    for name in list(os.environ):
        if name.startswith("DICOM_ADAPTER_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def never_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A role that got past its config check would start serving: fail instead."""

    def started(*args: Any, **kwargs: Any) -> int:
        for arg in args:
            getattr(arg, "close", lambda: None)()  # the coroutine asyncio.run was given
        raise AssertionError("the role started with a config it should have refused")

    for module in (scp_command, run_command, submit_command):
        monkeypatch.setattr(module.asyncio, "run", started)


def _argv(command: str, path: Path) -> list[str]:
    if command == "config check":
        return ["config", "check", str(path)]
    return [command, "--config", str(path), "--kafka", "127.0.0.1:1"]


def _problems(err: str) -> list[str]:
    """stderr as problem lines, without each command's prefix."""
    lines = err.splitlines()
    return [line.removeprefix("config: ").removeprefix("dicom-adapter: error: ") for line in lines]


@pytest.mark.parametrize("name", TABLE)
def test_bad_config_exits_2_with_one_line_per_problem_in_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    text, expected, commands = TABLE[name]
    path = tmp_path / "adapter.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    wanted = [(start.format(path=path), fix) for start, fix in expected]
    seen: dict[str, list[str]] = {}
    for command in commands:
        code = main(_argv(command, path))
        out, err = capsys.readouterr()
        assert code == 2, (command, out, err)
        assert out == "" and "Traceback" not in err
        problems = _problems(err)
        assert len(problems) == len(wanted), (command, problems)
        for start, fix in wanted:
            line = next((p for p in problems if p.startswith(start)), None)
            assert line is not None, (command, start, problems)
            assert fix in line, (command, line)
        seen[command] = sorted(problems)
    # The same lines whichever command read the file.
    assert len({tuple(lines) for lines in seen.values()}) == 1, seen


def test_roles_refuse_processor_settings_config_check_rejects_before_they_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding: ``scp`` and ``submit`` started (HTTP endpoint, Kafka) with processor
    settings ``config check`` rejects, then failed with exit 1 and a multi-line log
    record; ``run`` reached for Kafka or an embedded broker first."""
    path = tmp_path / "adapter.yaml"
    path.write_text(
        "scp:\n  ae_titles:\n    - ae_title: CT\n      processorSettings: {priority: fast}\n"
    )
    for command in ("scp", "submit", "run"):
        assert main(_argv(command, path)) == 2, command
        out, err = capsys.readouterr()
        assert out == "" and _problems(err) == [
            "scp.ae_titles[0] (CT): processorSettings.priority: 'fast' is not one of lower, "
            "normal, higher, immediate (or Clara's priority numbers 1 (lower), 2 (normal), "
            "3 (higher), 4 (immediate))",
            "scp.ae_titles[0] (CT): processorSettings: No pipeline defined for AE Title CT; "
            "add at least one 'pipeline-<name>: <pipeline id>' key",
        ], command


def test_bad_configs_through_python_m_processors_cli(tmp_path: Path) -> None:
    """The same as a user runs it: a process per command, exit 2, no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_ADAPTER_")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    for name in ("bad processorSettings", "empty file", "not YAML"):
        text, expected, _ = TABLE[name]
        path = tmp_path / f"{name.replace(' ', '-')}.yaml"
        path.write_text(text or "", encoding="utf-8")
        for command in ALL:
            proc = subprocess.run(
                [sys.executable, "-m", "processors.cli", *_argv(command, path)],
                capture_output=True,
                text=True,
                cwd=REPO,
                env=env,
                timeout=60,
                check=False,
            )
            assert proc.returncode == 2, (name, command, proc.stderr)
            assert "Traceback" not in proc.stderr and proc.stdout == ""
            assert len(proc.stderr.splitlines()) == len(expected), (name, command, proc.stderr)
