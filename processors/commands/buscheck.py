"""``config check FILE --kafka``: what the bus says about the AE titles (issue 14).

An instance is read only by the processes that serve its AE title (consumer group
``<prefix>.processors.<AE title>``); nobody else deletes it, so an AE title no process
serves just waits in the log -- until the topic's retention drops it. This check names
such AE titles: those the SCPs on the bus announce in their heartbeats
(``<prefix>.sources``) or that have instances among the latest records of each
instances partition, with no processor group, or a group without a live member.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from processors.roles.lane import processors_group
from streams.events import SOURCE_LOST, SourceHeartbeat
from streams.kafka import KafkaConnection, LogReader, read_to_end, read_topic, topic_names

TAIL = 1000  # latest records read per instances partition


@dataclass
class BusView:
    """AE titles seen on the bus (with where from) and the processor groups' members."""

    announced: dict[str, set[str]] = field(default_factory=dict)  # AE title -> sources
    in_log: set[str] = field(default_factory=set)  # AE titles among the latest instances
    members: dict[str, int] = field(default_factory=dict)  # AE title -> live processes


def findings(view: BusView, configured: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """``("bus", line)`` facts and ``("warning", line)`` problems (pure)."""
    seen = set(view.announced) | view.in_log
    for ae in sorted(seen | set(view.members)):
        where = []
        if ae in view.announced:
            where.append("received by " + ", ".join(sorted(view.announced[ae])))
        if ae in view.in_log:
            where.append("instances in the log")
        served = view.members.get(ae)
        state = "no processor group" if served is None else f"{served} live processor(s)"
        yield "bus", f"AE title {ae}: {'; '.join(where) or 'no recent instances'}; {state}"
        if ae in seen and not served and ae not in configured:
            yield (
                "warning",
                (
                    f"AE title {ae} has instances on the bus and no live processor serves it: "
                    "they wait in the instances topic (nothing deletes them) until a process "
                    f"with {ae} in scp.ae_titles runs, within the topic's retention"
                ),
            )


async def read_bus(kafka: KafkaConnection, prefix: str) -> BusView:
    """Gather a :class:`BusView` from the sources topic, the instances topics' tails and
    the processor consumer groups."""
    names = topic_names(prefix)
    view = BusView()
    latest: dict[str, SourceHeartbeat] = {}
    for record in await read_topic(kafka, names.sources):
        if isinstance(record.envelope.data, SourceHeartbeat):
            latest[record.envelope.data.source] = record.envelope.data
    for beat in latest.values():
        if beat.state != SOURCE_LOST:
            for ae in beat.ae_titles:
                view.announced.setdefault(ae, set()).add(beat.source)
    view.in_log = await _tail_ae_titles(kafka, names.instances)
    view.members = await _processor_groups(kafka, prefix)
    return view


async def _tail_ae_titles(kafka: KafkaConnection, topic: str) -> set[str]:
    async with LogReader(kafka, client_id="dicom-adapter-check") as reader:
        partitions = await reader.partitions(topic)
    consumer = kafka.consumer(client_id="dicom-adapter-check")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()
    starts = {tp.partition: max(0, end - TAIL) for tp, end in ends.items() if end > 0}
    if not starts:
        return set()
    read = await read_to_end(kafka, topic, starts, client_id="dicom-adapter-check")
    # The key is "<called AE>/<hash>": the AE title without decoding the event.
    return {r.key.rsplit("/", 1)[0] for r in read.records if r.key and "/" in r.key}


async def _processor_groups(kafka: KafkaConnection, prefix: str) -> dict[str, int]:
    head = processors_group(prefix, "")
    admin = kafka.admin(client_id="dicom-adapter-check")
    await admin.start()
    try:
        listed = await admin.list_consumer_groups()
        groups = [g[0] for g in listed if g[0].startswith(head)]
        members: dict[str, int] = {}
        if groups:
            for described in await admin.describe_consumer_groups(groups):
                for group in _groups_of(described):
                    members[group[0][len(head) :]] = len(group[1])
        return members
    finally:
        with contextlib.suppress(KafkaError):
            await admin.close()


def _groups_of(described: object) -> list[tuple[str, list[object]]]:
    """``(group id, members)`` of a DescribeGroups response (aiokafka returns them raw)."""
    out: list[tuple[str, list[object]]] = []
    for group in getattr(described, "groups", ()):
        # (error_code, group_id, state, protocol_type, protocol, members, ...)
        out.append((group[1], list(group[5])))
    return out


def bus_lines(view: BusView, configured: tuple[str, ...]) -> Mapping[str, list[str]]:
    """The findings as ``{"bus": [...], "warning": [...]}``."""
    out: dict[str, list[str]] = {"bus": [], "warning": []}
    for kind, line in findings(view, configured):
        out[kind].append(line)
    return out
