"""``dicom-adapter send`` — C-STORE files to an SCP, by default the local ``run``'s.

A sender for the first hour and for tests: the quick start needs nothing but the
adapter. It reuses the export role's C-STORE SCU (:class:`streams.scu.CStoreSender`:
one association, the files' own transfer syntaxes first), shows a progress bar on a
terminal and ends with a summary: sent, refused (with the peer's status) and failed
(with the reason). Without ``--host``/``--port``/``--ae`` it sends to the SCP the
config describes (``scp.host``, a wildcard address meaning this machine; ``scp.port``;
the config's AE title when there is exactly one).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from processors.commands.export import expand
from processors.commands.kafka_args import load_settings
from streams.config import AdapterConfig
from streams.errors import UsageError
from streams.scu import DEFAULT_CALLING_AE, CStoreSender, DicomPeer, SendOutcome, describe_status

_WILDCARDS = {"0.0.0.0", "::", ""}
#: Files named one by one in the summary at most; the counts cover every file.
MAX_FILE_LINES = 20

_EPILOG = (
    "DCMTK works too: echoscu -aec AE HOST PORT; storescu -aec AE +sd +r HOST PORT DIR. "
    "In an activated venv, 'storescu' and 'echoscu' are pynetdicom's own commands (other "
    "options: '+sd' fails with \"argument port: invalid int value\"); call DCMTK's by "
    "path: /usr/bin/storescu."
)


def register(subparsers: Any) -> None:
    """Add ``send`` to the CLI."""
    parser = subparsers.add_parser(
        "send",
        help="send DICOM files with C-STORE (default: to the local run's SCP)",
        description=(
            "Send DICOM Part 10 files (and every file below given folders) with C-STORE over "
            "one association, with a progress bar and a summary: sent, refused (with the "
            "SCP's status), failed (with the reason). Exit 0 when every file was sent, 1 "
            "otherwise. The SCP defaults to the one the config describes."
        ),
        epilog=_EPILOG,
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    parser.add_argument(
        "--config", metavar="FILE", type=Path, help="adapter config file (YAML or JSON)"
    )
    parser.add_argument(
        "--ae", metavar="AE", help="called AE title (default: the config's only AE title)"
    )
    parser.add_argument(
        "--host", help="SCP host (default: scp.host; a wildcard address means 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, help="SCP port (default: scp.port)")
    parser.add_argument(
        "--calling-ae",
        default=DEFAULT_CALLING_AE,
        metavar="AE",
        help="our AE title (default: %(default)s)",
    )
    parser.set_defaults(handler=run_send)


def run_send(args: argparse.Namespace) -> int:
    """Handler of ``send``; returns the exit code."""
    peer = resolve_peer(args, load_settings(args))
    files = expand(args.paths)
    if not files:
        raise UsageError(f"no files under {', '.join(str(p) for p in args.paths)}")
    # pynetdicom logs a rejected association as ERROR lines; the summary says it once.
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    outcomes = send_files(peer, files, sys.stderr)
    for line in summary(outcomes, peer):
        print(line)
    return 0 if all(o.delivered for o in outcomes) else 1


def resolve_peer(args: argparse.Namespace, config: AdapterConfig) -> DicomPeer:
    """Where to send: ``--ae/--host/--port``, else what ``config``'s SCP listens on."""
    scp = config.scp
    host = args.host or ("127.0.0.1" if scp.host in _WILDCARDS else scp.host)
    port = args.port if args.port is not None else scp.port
    if port is None:
        raise UsageError(
            "scp.port is null (the SCP takes DICOM over TLS only) and send speaks plain "
            "DICOM: pass --host and --port of a plain DICOM port"
        )
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is not a TCP port (1-65535)")
    ae = args.ae
    if not ae:
        titles = [entry.ae_title for entry in scp.ae_titles]
        if len(titles) != 1:
            found = f"it has {', '.join(titles)}" if titles else "it has none"
            raise UsageError(
                f"which AE title? pass --ae (the config names exactly one only when it has "
                f"one AE title; {found})"
            )
        ae = titles[0]
    return DicomPeer(ae_title=ae, host=host, port=port, calling_ae=args.calling_ae)


def send_files(peer: DicomPeer, files: Sequence[Path], bar_out: TextIO) -> list[SendOutcome]:
    """C-STORE ``files`` to ``peer`` with a progress bar on ``bar_out`` (only when it
    is a terminal); one outcome per file, in order."""
    with tqdm(
        total=len(files), unit="file", desc=f"C-STORE to {peer}", file=bar_out, disable=None
    ) as bar:

        def advance(outcome: SendOutcome) -> None:
            bar.update(1)

        return CStoreSender(peer).send_batch(files, advance)


def summary(outcomes: Sequence[SendOutcome], peer: DicomPeer) -> list[str]:
    """The closing lines: one per file not sent (the first :data:`MAX_FILE_LINES`), then
    the counts (refusals by status, failures by reason)."""
    lines: list[str] = []
    for o in outcomes:
        if o.kind == "refused" and o.status is not None:
            lines.append(f"refused: {o.label}: {describe_status(o.status)}")
        elif o.kind != "sent":
            lines.append(f"failed: {o.label}: {o.error or o.reason}")
    if len(lines) > MAX_FILE_LINES:
        # A stopped SCP fails every file the same way: the counts below say the rest.
        more = len(lines) - MAX_FILE_LINES
        lines = [*lines[:MAX_FILE_LINES], f"... and {more} more file(s) not sent"]
    sent = sum(1 for o in outcomes if o.kind == "sent")
    statuses = Counter(
        describe_status(o.status) for o in outcomes if o.kind == "refused" and o.status is not None
    )
    reasons = Counter(str(o.reason) for o in outcomes if o.kind == "failed")
    lines.append(f"sent {sent} of {len(outcomes)} file(s) to {peer}")
    refused = sum(statuses.values())
    lines.append(f"refused {refused}" + _counts(statuses))
    lines.append(f"failed {sum(reasons.values())}" + _counts(reasons))
    return lines


def _counts(counter: Counter[str]) -> str:
    if not counter:
        return ""
    return ": " + ", ".join(f"{n} {what}" for what, n in sorted(counter.items()))
