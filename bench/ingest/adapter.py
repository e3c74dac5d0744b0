"""Our SCP as a receiver: ``dicom-adapter scp --config FILE --kafka HOST:PORT``.

Each run gets a fresh storage folder and a fresh topic prefix, so the stored files and
the ``instance.received`` events on ``<prefix>.instances`` can both be counted exactly:
every instance acknowledged must be one ``.dcm`` file and (at least) one event, and the
events must name exactly the corpus's SOP Instance UIDs.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import yaml

from bench.ingest.corpus import Corpus
from bench.ingest.kafka import read_topic
from bench.ingest.receivers import CALLED_AE, Receiver, Verification, count_files, expect


def adapter_executable() -> str:
    """The ``dicom-adapter`` console script of the running interpreter's environment."""
    script = Path(sys.executable).parent / "dicom-adapter"
    return str(script) if script.exists() else "dicom-adapter"


class AdapterScp(Receiver):
    """The DICOM Stream Adapter's SCP role with events acknowledged by Kafka."""

    name = "ours"
    label = "DICOM Stream Adapter scp"

    def __init__(self, workdir: Path, port: int, *, nodelay: bool, bootstrap: str) -> None:
        super().__init__(workdir, port, nodelay=nodelay)
        self.bootstrap = bootstrap
        self.prefix = f"bench-{uuid.uuid4().hex[:12]}"
        self.storage = workdir / "storage"

    def prepare(self) -> None:
        scp: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "max_associations": 25,
            "ae_titles": [
                {
                    "ae_title": CALLED_AE,
                    "processorSettings": {
                        "groupBy": "Study",
                        "timeout": 60,
                        "pipeline-bench": "00000000000000000000000000000000",
                    },
                }
            ],
        }
        config = {
            "adapter_id": "bench-ingest",
            "storage": str(self.storage),
            "kafka": {"topic_prefix": self.prefix},
            "scp": scp,
            "http": {"port": 0},  # no health endpoint: nothing to collide with
        }
        path = self.workdir / "adapter.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def command(self) -> list[str]:
        return [
            adapter_executable(),
            "scp",
            "--config",
            str(self.workdir / "adapter.yaml"),
            "--kafka",
            self.bootstrap,
        ]

    @property
    def topic(self) -> str:
        """The instances topic of this run."""
        return f"{self.prefix}.instances"

    def verify(self, corpus: Corpus) -> Verification:
        wanted = len(corpus.files)
        files = count_files(self.storage / CALLED_AE, "*.dcm")
        problems = expect(files, wanted, "files")
        topic = read_topic(self.bootstrap, self.topic)
        problems += expect(topic.received, wanted, "instance.received events")
        if topic.sop_uids != corpus.sop_uids:
            missing = len(corpus.sop_uids - topic.sop_uids)
            extra = len(topic.sop_uids - corpus.sop_uids)
            problems.append(f"event SOP UIDs differ: {missing} missing, {extra} unexpected")
        return Verification(files, events=topic.received, problems=problems)
