"""The Quix Streams side: ``session_window(...).agg(events=Collect()).final()``.

Run by :mod:`bench.windows.quix_side` with the Python of a separate venv that has
``quixstreams>=3.27`` (this file imports nothing from the project). Reads the
``instance.received`` topic (JSON values, key ``<called_ae>/<PatientID>``, event time =
the Kafka record timestamp = ``received_at``), closes sessions on the partition's
watermark (``closing_strategy="partition"``) and writes each closed session to the output
topic as JSON ``{"start", "end", "events": [...]}`` -- whole events, or with ``--project``
what our closed groups keep (SOP/study/series UID and uri). Prints one JSON line with
the wall time (epoch ms) of the first processed record; the harness stops it with SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from quixstreams import Application
from quixstreams.dataframe.windows import Collect

_KEPT = ("sop_instance_uid", "study_instance_uid", "series_instance_uid", "uri")


def _project(value: dict) -> dict:
    data = value["data"]
    return {name: data[name] for name in _KEPT}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--gap-ms", type=int, default=5000)
    parser.add_argument(
        "--guarantee", choices=["at-least-once", "exactly-once"], default="at-least-once"
    )
    parser.add_argument("--changelog", action="store_true", help="use changelog topics")
    parser.add_argument(
        "--project",
        action="store_true",
        help="collect only what a closed group keeps (sop/study/series UID, uri), as ours "
        "does, instead of the whole event",
    )
    args = parser.parse_args()

    first: list[int] = []

    def processed(_topic: str, _partition: int, _offset: int) -> None:
        if not first:
            first.append(time.time_ns() // 1_000_000)
            print(json.dumps({"first_record_ms": first[0]}), flush=True)

    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        use_changelog_topics=args.changelog,
        processing_guarantee=args.guarantee,
        on_message_processed=processed,
        loglevel="WARNING",
    )
    source = app.topic(args.input, key_deserializer="str", value_deserializer="json")
    sink = app.topic(args.output, key_serializer="str", value_serializer="json")
    sdf = app.dataframe(source)
    if args.project:
        sdf = sdf.apply(_project)
    sdf = (
        sdf.session_window(inactivity_gap_ms=args.gap_ms)
        .agg(events=Collect())
        .final(closing_strategy="partition")
    )
    sdf.to_topic(sink)
    print(json.dumps({"ready": True}), flush=True)
    app.run()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
