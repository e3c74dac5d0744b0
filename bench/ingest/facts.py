"""Machine facts and software versions recorded with every result."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not available"
    lines = [ln.strip() for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    return lines[0] if lines else "not available"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _filesystem(path: Path) -> str:
    return _first_line(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "--target", str(path)])


def _debian() -> str:
    try:
        return "Debian " + Path("/etc/debian_version").read_text().strip()
    except OSError:
        return platform.platform()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def facts(work: Path, kafka: str) -> dict[str, str]:
    """What the results depend on: machine, OS, disk and every peer's version."""
    return {
        "cpu": f"{os.cpu_count()} x {_cpu_model()}",
        "memory": f"{_mem_gib():.0f} GiB",
        "os": f"{_debian()}, Linux {platform.release()}",
        "work dir": f"{work} ({_filesystem(work)})",
        "python": platform.python_version(),
        "DCMTK": _first_line(["/usr/bin/storescu", "--version"]).strip("$ "),
        "Orthanc": _first_line(["/usr/sbin/Orthanc", "--version"]),
        "pynetdicom": _version("pynetdicom"),
        "pydicom": _version("pydicom"),
        "numpy": _version("numpy"),
        "aiokafka": _version("aiokafka"),
        "Kafka": kafka,
    }
