"""``dicom-adapter broker fetch|start`` — the embedded broker on its own (DESIGN.md §3.1).

``fetch`` downloads the Apache Kafka jars from Maven Central into the cache;
``start`` runs a local broker in the foreground and prints its bootstrap address as the
first line of stdout (``bootstrap: 127.0.0.1:PORT``), then its kind and data folder.
Ctrl-C or SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from streams.broker import (
    KAFKA_VERSION,
    KafkaBroker,
    LocalBroker,
    TansuBroker,
    fetch_kafka_jars,
    is_kafka_version,
    kafka_libs_dir,
    select_embedded_broker,
)
from streams.broker.secure import grant
from streams.config import KafkaConfig
from streams.errors import UsageError
from streams.kafka.acls import ROLES, role_acls

_VERSION_HELP = "Apache Kafka version (default: %(default)s)"


def register(subparsers: Any) -> None:
    """Add ``broker fetch`` and ``broker start`` to the CLI."""
    parser = subparsers.add_parser(
        "broker",
        help="fetch or run the embedded Kafka broker",
        description="The embedded broker: Apache Kafka (KRaft) from Maven jars, or Tansu.",
    )
    actions = parser.add_subparsers(dest="broker_action", metavar="ACTION")
    actions.required = True

    fetch = actions.add_parser(
        "fetch",
        help="download the Apache Kafka jars (Maven Central) into the cache",
        description=(
            "Resolve org.apache.kafka:kafka_2.13 and its runtime dependencies with Maven "
            "into ~/.cache/dicom-adapter/kafka/VERSION/libs (or $DICOM_ADAPTER_CACHE). "
            "Does nothing when they are already there."
        ),
    )
    fetch.add_argument("--version", default=KAFKA_VERSION, help=_VERSION_HELP)
    fetch.set_defaults(handler=run_fetch)

    start = actions.add_parser(
        "start",
        help="run a local broker in the foreground and print its bootstrap address",
        description=(
            "Run Apache Kafka in KRaft mode (Tansu if Java or the jars are missing) on a "
            "loopback port until Ctrl-C. The first stdout line is 'bootstrap: HOST:PORT'."
        ),
    )
    start.add_argument("--port", type=int, help="client port (default: a free one)")
    start.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="data folder, kept across restarts (default: a temporary folder removed on exit)",
    )
    start.add_argument(
        "--kind",
        choices=["auto", "kafka", "tansu"],
        default="auto",
        help="which broker (default: Apache Kafka if it can run here, else Tansu)",
    )
    start.add_argument("--version", default=KAFKA_VERSION, help=_VERSION_HELP)
    start.add_argument("--heap", default="512m", help="JVM heap for Kafka (default: %(default)s)")
    start.add_argument(
        "--secure",
        action="store_true",
        help=(
            "Apache Kafka with TLS and SCRAM-SHA-512 only: a local CA, users admin (super "
            "user), scp, process, submit and cli with the ACLs of docs/security.md "
            "(for tests and labs)"
        ),
    )
    start.add_argument(
        "--topic-prefix",
        default="dicom",
        help="with --secure: the topic prefix the role users get ACLs for (default: %(default)s)",
    )
    start.set_defaults(handler=run_start)


def _check_version(version: str) -> None:
    if not is_kafka_version(version):
        raise UsageError(f"--version {version!r} is not a Kafka version (e.g. {KAFKA_VERSION})")


def run_fetch(args: argparse.Namespace) -> int:
    """Handler of ``broker fetch``."""
    _check_version(args.version)
    already = (kafka_libs_dir(args.version) / f"kafka_2.13-{args.version}.jar").is_file()
    # Maven's total is unknown up front: the bar counts files downloaded (terminal only).
    with tqdm(unit=" files", desc="Maven Central", file=sys.stderr, disable=None) as bar:

        def downloaded(name: str) -> None:
            bar.set_postfix_str(name, refresh=False)
            bar.update(1)

        libs = fetch_kafka_jars(version=args.version, progress=downloaded)
    state = "already in" if already else "fetched into"
    print(f"Apache Kafka {args.version} jars {state} {libs}")
    return 0


def run_start(args: argparse.Namespace) -> int:
    """Handler of ``broker start``."""
    _check_version(args.version)
    if args.port is not None and not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port} is not a TCP port (1-65535)")
    if args.data is not None and args.data.exists() and not args.data.is_dir():
        raise UsageError(f"--data {args.data} is a file; give a folder")
    if args.secure and args.kind == "tansu":
        raise UsageError("--secure needs Apache Kafka (--kind kafka), Tansu has no TLS or SASL")
    if args.data is not None:
        return asyncio.run(_serve(args, args.data.resolve(), temporary=False))
    with tempfile.TemporaryDirectory(prefix="dicom-adapter-broker-") as tmp:
        return asyncio.run(_serve(args, Path(tmp), temporary=True))


def _broker(args: argparse.Namespace, data: Path) -> LocalBroker:
    if args.kind == "kafka" or args.secure:
        return KafkaBroker(
            data, port=args.port, version=args.version, heap=args.heap, secure=args.secure
        )
    if args.kind == "tansu":
        return TansuBroker(data, port=args.port)
    broker = select_embedded_broker(data, args.port, version=args.version)
    if isinstance(broker, KafkaBroker):
        broker.heap = args.heap
    return broker


async def _serve(args: argparse.Namespace, data: Path, *, temporary: bool) -> int:
    broker = _broker(args, data)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await broker.start()
        print(f"bootstrap: {broker.bootstrap_servers}")
        print(f"broker: {broker.description}")
        print(f"data: {data}" + (" (temporary, removed on exit)" if temporary else ""))
        if isinstance(broker, KafkaBroker) and broker.security is not None:
            security = broker.security
            kafka = KafkaConfig(topic_prefix=args.topic_prefix)
            for role in ROLES:
                await grant(
                    security.connection(broker.bootstrap_servers), role, role_acls(role, kafka)
                )
            print(f"security: SASL_SSL, SCRAM-SHA-512; CA certificate {security.ca}")
            print(
                f"users: {security.folder / 'users.json'} (admin: super user; "
                f"{', '.join(ROLES)}: the ACLs of their role for prefix {args.topic_prefix})"
            )
        sys.stdout.flush()
        print("dicom-adapter: broker running; Ctrl-C stops it", file=sys.stderr)
        exited = asyncio.create_task(broker.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            print(
                f"dicom-adapter: error: {broker.description} exited on its own with code "
                f"{exited.result()}; see {broker.log_path}",
                file=sys.stderr,
            )
            return 1
        exited.cancel()
        return 0
    finally:
        await broker.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
