"""Run the job-lag bench: ``python -m bench.joblag --studies 60``; see :mod:`bench.joblag`."""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

from streams.broker import KafkaBroker
from streams.events import GroupClosed, InstanceReceived
from streams.kafka import read_topic

ROOT = Path(__file__).resolve().parents[2]
AE_TITLE = "BENCH-LAG"
LOAD_AE = "BENCH-LOAD"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.joblag", description=__doc__)
    parser.add_argument("--studies", type=int, default=60, help="studies sent (default 60)")
    parser.add_argument("--instances", type=int, default=3, help="instances per study")
    parser.add_argument("--every", type=float, default=0.25, help="seconds between studies")
    parser.add_argument("--timeout", type=int, default=5, help="processorSettings.timeout")
    parser.add_argument("--partitions", type=int, default=3, help="instances partitions")
    parser.add_argument("--skew", help="a second SCP with this clock offset (e.g. +20s)")
    parser.add_argument(
        "--load",
        type=int,
        default=0,
        metavar="N",
        help=(
            "ingest load: N storescu processes send the ingest bench's small corpus to the "
            f"same SCP (AE title {LOAD_AE}, its own processor), over and over until every "
            "measured group has closed (default 0: no load)"
        ),
    )
    parser.add_argument("--kafka", help="use this broker (HOST:PORT) instead of a dedicated one")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(folder: Path, prefix: str, args: argparse.Namespace) -> Path:
    path = folder / "bench.yaml"
    path.write_text(
        f"adapter_id: bench\nstorage: {folder / 'storage'}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: {args.partitions}\n"
        "http:\n  host: 127.0.0.1\n  port: 0\n"
        "security:\n  insecure: true\n"
        "scp:\n  host: 127.0.0.1\n  watermark_percent: 100\n  reserve_space_gb: 0\n"
        f"  ae_titles:\n    - ae_title: {AE_TITLE}\n      processorSettings:\n"
        f"        timeout: {args.timeout}\n        pipeline-bench: P-BENCH\n"
        f"    - ae_title: {LOAD_AE}\n      processorSettings:\n"
        f"        timeout: {args.timeout}\n        pipeline-load: P-LOAD\n"
    )
    return path


def start(role: str, name: str, config: Path, bootstrap: str, logs: Path, **extra: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_ADAPTER")}
    env.update({"DICOM_ADAPTER_ADAPTER_ID": name, **extra})
    argv = [sys.executable, "-m", "processors.cli", "--log-format", "json", role]
    argv += ["--config", str(config), "--kafka", bootstrap]
    with (logs / f"{name}.log").open("ab") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out)


def faketime_env(offset: str) -> dict[str, str]:
    libs = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not libs:
        raise SystemExit("--skew needs libfaketime (apt-get install faketime)")
    return {"LD_PRELOAD": libs[0], "FAKETIME": offset}


def study(n: int, instances: int) -> list[Dataset]:
    study_uid, series_uid = generate_uid(), generate_uid()
    out = []
    for i in range(instances):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientID, ds.PatientName, ds.Modality = f"LAG-{n}", "Bench^Lag", "CT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study_uid, series_uid, i
        out.append(ds)
    return out


def send(port: int, datasets: list[Dataset]) -> None:
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
    if not assoc.is_established:
        raise RuntimeError(f"association to port {port} refused")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if not status:  # pynetdicom: no response (aborted, or its DIMSE timeout passed)
                raise RuntimeError(
                    "C-STORE got no response (association aborted or DIMSE timeout); "
                    f"the association was {'established' if assoc.is_established else 'ended'}"
                )
            if getattr(status, "Status", None) != 0:
                raise RuntimeError(f"C-STORE failed: status 0x{status.Status:04X}")
    finally:
        assoc.release()


class IngestLoad:
    """``senders`` storescu processes sending shares of the small ingest corpus to
    ``port`` in a loop (a C-STORE flood next to the measured studies) until :meth:`stop`."""

    def __init__(self, port: int, senders: int) -> None:
        from bench.ingest.__main__ import DEFAULT_CACHE
        from bench.ingest.corpus import SPECS, load_corpus

        files = load_corpus(SPECS["small"], DEFAULT_CACHE).files
        self.shares = [files[i::senders] for i in range(senders)]
        self.port = port
        self.sent = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=(s,)) for s in self.shares]
        self.began = self.ended = 0.0

    def start(self) -> None:
        self.began = time.monotonic()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.ended = time.monotonic()

    def _loop(self, files: Sequence[Path]) -> None:
        argv = ["storescu", "-aec", LOAD_AE, "127.0.0.1", str(self.port), *map(str, files)]
        env = {**os.environ, "TCP_NODELAY": "1"}
        while not self._stop.is_set():
            done = subprocess.run(argv, env=env, capture_output=True, check=False)
            if done.returncode == 0:
                with self._lock:
                    self.sent += len(files)

    @property
    def rate(self) -> float:
        """Instances per second sent, start to stop (every pass runs to its end)."""
        return self.sent / max(self.ended - self.began, 1e-9)


def wait_for_scp(port: int, proc: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the SCP on port {port} exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"the SCP on port {port} did not listen within {timeout_s} s")


async def lags(bootstrap: str, prefix: str, timeout_ms: int, expected: int) -> list[int]:
    """Per closed group of the measured AE title: its record's log time minus its
    deadline (ms); waits for all."""
    deadline = time.monotonic() + 120
    while True:
        jobs = await read_topic(bootstrap, f"{prefix}.jobs")
        closed = [
            r
            for r in jobs
            if isinstance(r.envelope.data, GroupClosed)
            and r.envelope.data.jobs
            and r.envelope.data.ae_title == AE_TITLE
        ]
        if len(closed) >= expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    instances = await read_topic(bootstrap, f"{prefix}.instances")
    last: dict[str, int] = {}
    for r in instances:
        data = r.envelope.data
        if isinstance(data, InstanceReceived) and data.called_ae == AE_TITLE:
            key = data.study_instance_uid
            last[key] = max(last.get(key, 0), r.timestamp)
    return [r.timestamp - (last[r.envelope.data.group_key] + timeout_ms) for r in closed]  # type: ignore[union-attr]


def percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench-joblag-"))
    logs = folder / "logs"
    logs.mkdir()
    broker: KafkaBroker | None = None
    procs: list[Any] = []
    load: IngestLoad | None = None
    load_before = os.getloadavg()
    finished = False
    try:
        bootstrap = args.kafka
        if bootstrap is None:
            broker = KafkaBroker(folder / "kafka")
            asyncio.run(broker.start())
            bootstrap = broker.bootstrap_servers
        prefix = f"joblag-{uuid.uuid4().hex[:8]}"
        config = write_config(folder, prefix, args)
        ports = [free_port()]
        procs.append(
            start("scp", "scp-1", config, bootstrap, logs, DICOM_ADAPTER_SCP__PORT=str(ports[0]))
        )
        if args.skew:
            ports.append(free_port())
            env = {"DICOM_ADAPTER_SCP__PORT": str(ports[1]), **faketime_env(args.skew)}
            procs.append(start("scp", "scp-2", config, bootstrap, logs, **env))
        procs.append(start("process", "process-1", config, bootstrap, logs))
        for port, proc in zip(ports, procs, strict=False):
            wait_for_scp(port, proc)
        time.sleep(3.0)  # let the process join its group before the first study
        if args.load:
            load = IngestLoad(ports[0], args.load)
            load.start()
            time.sleep(2.0)  # the flood is running before the first measured study
        began = time.monotonic()
        for n in range(args.studies):
            datasets = study(n, args.instances)
            half = len(datasets) // 2 or 1
            if args.skew:  # the study's associations alternate between the two clocks
                send(ports[0], datasets[:half])
                send(ports[1], datasets[half:])
            else:
                send(ports[0], datasets)
            pause = began + (n + 1) * args.every - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        found = asyncio.run(lags(bootstrap, prefix, args.timeout * 1000, args.studies))
        finished = True
    finally:
        if load is not None:
            load.stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if broker is not None:
            asyncio.run(broker.stop())
        load_after = os.getloadavg()
        if finished:
            shutil.rmtree(folder, ignore_errors=True)
        else:  # the roles' logs say what happened
            print(f"bench.joblag: stopped early; logs kept in {logs}", file=sys.stderr)
    figures = {
        "studies": args.studies,
        "groups": len(found),
        "split_or_missing": args.studies - len(found),
        "timeout_s": args.timeout,
        "skew": args.skew or "none",
        "load_senders": args.load,
        "load_inst_per_s": round(load.rate) if load is not None else 0,
        "lag_ms_min": min(found, default=0),
        "lag_ms_p50": int(statistics.median(found)) if found else 0,
        "lag_ms_p95": percentile(found, 0.95) if found else 0,
        "lag_ms_p99": percentile(found, 0.99) if found else 0,
        "lag_ms_max": max(found, default=0),
        "within_0_1s": sum(0 < lag <= 1000 for lag in found),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
    }
    print(json.dumps(figures) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))
    return 0 if found and len(found) == args.studies else 1


if __name__ == "__main__":
    raise SystemExit(main())
