"""``dicom-adapter studies reprocess STUDY_UID --ae AE [--pipeline NAME]`` -- run a study
through a pipeline again from the files still on disk, without the PACS re-sending it.

The study's instances are found in ``<prefix>.instances`` (read with a group-less
reader: it joins no group and commits nothing), one per SOP Instance UID (the last
received, as the AE Title Job Processor keeps), and become one manual job per chosen
pipeline (:mod:`processors.commands.manual`): new job ids, ``reason: "manual"``, the
AE title's priority. When files are gone, nothing is written and the error names them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

from processors.commands.kafka_args import add_kafka_arguments, load_settings, resolve_kafka
from processors.commands.manual import (
    ae_settings,
    choose_pipelines,
    manual_group,
    publish_group,
    require_files,
    study_group_by,
)
from streams.errors import UsageError
from streams.events import GroupInstance, InstanceReceived, RecordKeys
from streams.kafka import KafkaConnection, Record, read_topic, topic_names

READ_TIMEOUT_S = 600.0


def register(subparsers: Any) -> None:
    """Add ``studies`` to the CLI."""
    parser = subparsers.add_parser(
        "studies",
        help="re-process a study from the files still on disk (a new manual job)",
        description=(
            "'reprocess STUDY_UID --ae AE' finds the study's instances of AE in "
            "<prefix>.instances and writes a new job (reason manual) per pipeline of the "
            "AE title, or only --pipeline NAME, if every file is still on disk."
        ),
    )
    add_kafka_arguments(parser)
    parser.add_argument("action", choices=["reprocess"])
    parser.add_argument("study_uid", metavar="STUDY_UID", help="Study Instance UID")
    parser.add_argument("--ae", required=True, metavar="AE", help="the called AE title")
    parser.add_argument(
        "--pipeline", metavar="NAME", help="only pipeline-NAME (default: every pipeline)"
    )
    parser.set_defaults(handler=run_studies)


def study_instances(
    records: Sequence[Record], ae_title: str, study_uid: str
) -> list[InstanceReceived]:
    """The study's instances of ``ae_title``, one per SOP Instance UID (the last
    received), in arrival order of those."""
    last: dict[str, InstanceReceived] = {}
    for record in records:
        data = record.envelope.data
        if (
            isinstance(data, InstanceReceived)
            and data.called_ae == ae_title
            and data.study_instance_uid.strip(" \x00") == study_uid
        ):
            last.pop(data.sop_instance_uid, None)
            last[data.sop_instance_uid] = data
    return list(last.values())


def run_studies(args: argparse.Namespace) -> int:
    """Handler of ``studies``; returns the exit code."""
    study_uid = args.study_uid.strip()
    config = resolve_kafka(args, load_settings(args))
    settings = ae_settings(config, args.ae)
    pipelines = choose_pipelines(settings, args.ae, args.pipeline)
    kafka = KafkaConnection.of(config.kafka)
    asyncio.run(kafka.check_credentials())
    names = topic_names(config.kafka.topic_prefix)
    records = asyncio.run(read_topic(kafka, names.instances, timeout_s=READ_TIMEOUT_S))
    found = study_instances(records, args.ae, study_uid)
    if not found:
        raise UsageError(
            f"no instance of study {study_uid} for AE title {args.ae} in {names.instances} "
            "(never received, or removed by the topic's retention)"
        )
    instances = [GroupInstance.of(i) for i in found]
    require_files(instances, f"study {study_uid} cannot be reprocessed")
    record = manual_group(
        ae_title=args.ae,
        group_by=study_group_by(),
        group_key=study_uid,
        patient_id=found[-1].patient_id,
        instances=instances,
        pipelines=pipelines,
        priority=settings.priority,
        now_ms=int(time.time() * 1000),
        first_received_at=min(i.received_at for i in found),
        last_received_at=max(i.received_at for i in found),
    )
    key = RecordKeys.of(config.kafka.record_key_secret())(args.ae, record.patient_id)
    asyncio.run(publish_group(kafka, names.jobs, key, record))
    ids = ", ".join(f"{j.job_id} ({j.pipeline_name})" for j in record.jobs)
    print(
        f"study {study_uid}: {len(instances)} instances, new job {ids}; follow it with "
        "'dicom-adapter jobs show JOB_ID'",
        file=sys.stdout,
    )
    return 0
