"""The README's quick start, run as written on a copy of the repository (issue 20).

The run command (between ``<!-- run-command -->`` markers) runs with its last step,
``run``, in the background, as the README tells; then every line of the
``<!-- quickstart -->`` block runs in turn, and each ``#`` line under a command must
match a line of its output (``…`` stands for anything). So the README cannot drift
from what the adapter does.

What differs from a user's machine, and why:

* the copy is the repository's files (``git ls-files``: tracked and new, not ignored),
  without ``data/`` or any broker of a developer's own run;
* the install steps (``python3 -m venv .venv`` and ``pip install -e .``) are checked to
  be exactly the README's and replaced by a link to this test's own virtualenv (same
  code, no network); ``DICOM_ADAPTER_QUICKSTART_INSTALL=1`` runs them for real;
* the SCP and HTTP ports are free ones given through ``DICOM_ADAPTER_*`` variables (the
  README's 11112 and 8080 may be taken on a shared machine); the README's ``11112`` is
  replaced by that port in the DCMTK lines and the expected output, which is exactly
  what a user who sets the variable sees.

The run's log must hold no ERROR or WARNING line from start to Ctrl-C (a clean start).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.dicom import dcmtk
from tests.helpers.waiting import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
INSTALL_STEPS = ["python3 -m venv .venv", ".venv/bin/pip install -q -e ."]
README_SCP_PORT = "11112"

pytestmark = [pytest.mark.slow, pytest.mark.dicom, pytest.mark.timeout(420)]


@dataclass
class Step:
    """One quick-start command and the output lines it must show."""

    command: str
    expected: list[str] = field(default_factory=list)


def between(text: str, marker: str) -> list[str]:
    """The indented (code) lines between ``<!-- marker -->`` and ``<!-- /marker -->``."""
    assert f"<!-- {marker} -->" in text, f"README.md lost its {marker} markers"
    block = text.split(f"<!-- {marker} -->", 1)[1].split(f"<!-- /{marker} -->", 1)[0]
    return [line[4:] for line in block.splitlines() if line.startswith("    ")]


def quickstart_steps(text: str) -> list[Step]:
    steps: list[Step] = []
    for line in between(text, "quickstart"):
        if line.startswith("# "):
            assert steps, "an expected-output line needs a command above it"
            steps[-1].expected.append(line[2:])
        else:
            steps.append(Step(line))
    return steps


def pattern(expected: str) -> re.Pattern[str]:
    """``…`` is anything, a run of spaces is any run of whitespace, the rest is literal."""
    parts = (r"\s+".join(map(re.escape, part.split())) for part in expected.split("…"))
    return re.compile(".*".join(parts))


def missing(expected: list[str], output: str) -> list[str]:
    lines = output.splitlines()
    return [e for e in expected if not any(pattern(e).search(line) for line in lines)]


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The repository's files in a new folder (what a fresh clone holds)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout to copy the repository's files")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True, timeout=60,
    ).stdout.decode()  # fmt: skip
    target = tmp_path / "clone"
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture
def env() -> dict[str, str]:
    """The user's environment: no adapter or Kafka overrides, DCMTK's tools on PATH
    (not the venv's pynetdicom ``storescu``), and free ports for the SCP and HTTP."""
    out = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DICOM_ADAPTER_")
        and k not in ("KAFKA_BOOTSTRAP_SERVERS", "VIRTUAL_ENV")
    }
    venv_bin = str(Path(sys.prefix) / "bin")
    out["PATH"] = os.pathsep.join(
        p for p in out.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p != venv_bin
    )
    out["DICOM_ADAPTER_SCP__PORT"] = str(free_port())
    out["DICOM_ADAPTER_HTTP__PORT"] = str(free_port())
    return out


def install(clone: Path, steps: list[str], env: dict[str, str]) -> None:
    assert steps == INSTALL_STEPS, f"the README's install steps changed: {steps}"
    if os.environ.get("DICOM_ADAPTER_QUICKSTART_INSTALL") == "1":
        for step in steps:
            bash(step, clone, env, timeout=900).check_returncode()
    else:
        (clone / ".venv").symlink_to(sys.prefix, target_is_directory=True)


def bash(
    command: str, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


@dataclass
class Run:
    """The README's ``run``, started in the background in ``clone``."""

    clone: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> str:
        """Ctrl-C, as the README says; returns the whole log once it has exited."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log.read_text(errors="replace")


@pytest.fixture
def running(clone: Path, env: dict[str, str]) -> Iterator[Run]:
    """Runs the README's run command: install, then every step, the last (``run``) in
    the background; yields once ``run`` says it is ready, and stops it afterwards."""
    steps = between(README.read_text(encoding="utf-8"), "run-command")[0].split(" && ")
    install(clone, steps[:2], env)
    for step in steps[2:-1]:
        done = bash(step, clone, env, timeout=900)
        assert done.returncode == 0, f"{step}: {done.stderr}"
    assert " run " in f"{steps[-1]} ", f"the run command should end with run: {steps[-1]}"
    log = clone.parent / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {steps[-1]}"], cwd=clone, env=env, stdout=out, stderr=out
        )
    run = Run(clone, proc, log)
    try:
        # The README: "ready when it logs partitions [...] of dicom.instances ready".
        wait_for(
            lambda: (
                "of dicom.instances ready" in log.read_text(errors="replace")
                or proc.poll() is not None
            ),
            "run ready",
            timeout_s=180,
        )
        assert proc.poll() is None, log.read_text(errors="replace")
        yield run
    finally:
        run.stop()


def test_readme_quick_start_works_as_written_and_run_logs_no_error_or_warning(
    running: Run, env: dict[str, str]
) -> None:
    if dcmtk("echoscu") is None or dcmtk("storescu") is None:
        pytest.skip("the quick start's last lines need DCMTK (apt-get install dcmtk)")
    port = env["DICOM_ADAPTER_SCP__PORT"]
    steps = quickstart_steps(README.read_text(encoding="utf-8"))
    assert [s.command.split()[0] for s in steps][:3] == [".venv/bin/dicom-adapter"] * 3
    for step in steps:
        command = step.command.replace(f" {README_SCP_PORT}", f" {port}")
        expected = [e.replace(f":{README_SCP_PORT}", f":{port}") for e in step.expected]
        check_step(command, expected, running.clone, env)
    # A clean start, this use and Ctrl-C: no ERROR or WARNING line (issue 20).
    text = running.stop()
    assert running.proc.returncode in (0, 130), text
    loud = [line for line in text.splitlines() if re.search(r" (ERROR|WARNING|CRITICAL) ", line)]
    assert loud == [], "a clean run, from start to Ctrl-C, logged:\n" + "\n".join(loud)


def check_step(command: str, expected: list[str], clone: Path, env: dict[str, str]) -> None:
    """Run ``command`` until it exits 0 showing every ``expected`` line (a job is made
    5 s after its study's last instance, so its lines come a few seconds late)."""
    results: list[subprocess.CompletedProcess[str]] = []

    def shows_expected() -> bool:
        results.append(bash(command, clone, env))
        return results[-1].returncode == 0 and not missing(expected, results[-1].stdout)

    try:
        wait_for(shows_expected, command, timeout_s=30)
    except AssertionError:
        last = results[-1]
        pytest.fail(
            f"{command}\nexit {last.returncode}; missing {missing(expected, last.stdout)}"
            f"\nstdout:\n{last.stdout}\nstderr:\n{last.stderr}"
        )


def test_the_quickstart_block_parses() -> None:
    steps = quickstart_steps(README.read_text(encoding="utf-8"))
    assert steps[0].command.startswith(".venv/bin/dicom-adapter send ")
    assert all(pattern(e) for s in steps for e in s.expected)
    assert missing(["… a b …"], "x a   b y") == []
    assert missing(["a … c"], "a b d") == ["a … c"]
