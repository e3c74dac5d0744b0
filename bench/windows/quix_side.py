"""The Quix Streams side: its own venv (created on demand) and how to run it.

``quixstreams`` (with ``confluent-kafka`` and ``rocksdict``) is NOT a project
dependency: it lives in ``bench/windows/.venv`` (ignored by git), created with
``python -m venv`` and ``pip install 'quixstreams>=3.27'`` the first time it is needed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from bench.windows.data import is_sentinel_key
from bench.windows.sides import SideSpec

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
REQUIREMENT = "quixstreams>=3.27"
APP = HERE / "quix_app.py"


def venv_python(venv: Path = VENV) -> Path:
    """The venv's interpreter (created with quixstreams installed if missing)."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with {REQUIREMENT} (once) ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if subprocess.run(
        [str(python), "-c", "import quixstreams"], capture_output=True, check=False
    ).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", REQUIREMENT], check=True)
    return python


def quix_version(python: Path) -> str:
    """Versions of quixstreams and confluent-kafka (librdkafka) in the venv."""
    code = (
        "import importlib.metadata as m, confluent_kafka as c;"
        "print(m.version('quixstreams'), m.version('confluent-kafka'), c.libversion()[0])"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    quix, ck, librdkafka = out.stdout.split()
    return f"quixstreams {quix} (confluent-kafka {ck}, librdkafka {librdkafka})"


def parse_window(key: bytes | None, value: bytes) -> tuple[str, int] | None:
    """A closed Quix session: ``(key, number of collected events)``; sentinels ignored."""
    text = key.decode() if key is not None else ""
    if is_sentinel_key(text):
        return None
    return text, len(orjson.loads(value)["events"])


def quix_spec(
    python: Path,
    bootstrap: str,
    *,
    input_topic: str,
    output_topic: str,
    group_id: str,
    state_dir: Path,
    gap_ms: int,
    exactly_once: bool = False,
    changelog: bool = False,
    name: str = "quix",
    project: bool = False,
) -> SideSpec:
    """The Quix app as a child process."""
    argv = [
        str(python),
        str(APP),
        "--broker",
        bootstrap,
        "--input",
        input_topic,
        "--output",
        output_topic,
        "--group",
        group_id,
        "--state-dir",
        str(state_dir),
        "--gap-ms",
        str(gap_ms),
        "--guarantee",
        "exactly-once" if exactly_once else "at-least-once",
    ]
    if changelog:
        argv.append("--changelog")
    if project:
        argv.append("--project")
    return SideSpec(
        name,
        argv,
        group_id,
        output_topic,
        parse_window,
        input_topic=input_topic,
        transactional=exactly_once,
    )
